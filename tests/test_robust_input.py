"""Bad input is refused before it touches the database.

"Unchanged" is checked byte for byte: :func:`db_state` maps every file
under the database folder (recursively, by relative path) to the SHA-256 of
its bytes, leaving out only ``catalog.sqlite-shm``, SQLite's shared-memory
index, which any reader may rebuild. So a refused ingest may not create,
remove, grow or rewrite any file, the WAL included.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from ibin.cli import main
from ibin.errors import DatabaseError
from ibin.scan import save_x3p
from ibin.synth import cartridge_case

from ._malformed import build


def db_state(path: Path) -> dict[str, str]:
    """Every file of a database folder (except SQLite's transient -shm) -> SHA-256 of its bytes."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if p.is_dir():
            out[rel + "/"] = "dir"
        elif p.name != "catalog.sqlite-shm":
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build(tmp_path_factory.mktemp("malformed"))


@pytest.fixture(scope="module")
def good_files(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("good")
    out = []
    for f in range(2):
        p = d / f"good-{f}.x3p"
        save_x3p(cartridge_case(700 + f, 0, pixel_um=12.5)[0], p)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def db(tmp_path_factory, good_files) -> Path:
    path = tmp_path_factory.mktemp("db") / "db"
    assert main(["ingest", str(path), str(good_files[0]), "--meta", "case=C-1"]) == 0
    assert main(["search", str(path), str(good_files[1])]) == 0  # so the index file exists too
    return path


def test_malformed_corpus_refused_and_database_unchanged(db, corpus, capsys):
    assert len(corpus) >= 40
    before = db_state(db)
    assert "index/cartridge-height.faiss" in before and "catalog.sqlite-wal" not in before
    capsys.readouterr()
    failures = []
    for case in corpus:
        try:
            rc = main(["ingest", str(db), *case.args])
        except SystemExit as e:  # argparse
            rc = e.code
        err = capsys.readouterr().err
        problems = []
        if rc == 0:
            problems.append("exit code 0")
        if not re.search(case.expect, err, re.I):
            problems.append(f"message does not say /{case.expect}/")
        if case.file is not None and str(case.file) not in err:
            problems.append("message does not name the file")
        if db_state(db) != before:
            problems.append("THE DATABASE CHANGED")
        if problems:
            failures.append(f"{case.name}: {', '.join(problems)}: {err.strip()[:300]}")
    print(f"\nmalformed inputs refused cleanly: {len(corpus) - len(failures)} of {len(corpus)}")
    assert not failures, "\n".join(failures)


def test_refused_batch_never_creates_the_database(tmp_path, corpus, capsys):
    files = [c.args[0] for c in corpus if c.file is not None and len(c.args) == 1][:30]
    target = tmp_path / "new-db"
    assert main(["ingest", str(target), *files]) == 1
    err = capsys.readouterr().err
    assert not target.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    assert all(f in err for f in files)
    target.mkdir()  # an empty folder made for the database stays empty
    assert main(["ingest", str(target), *files[:5]]) == 1
    assert list(target.iterdir()) == []


def test_batch_with_good_and_bad_files(tmp_path, corpus, good_files, capsys):
    bad = [c.args[0] for c in corpus if c.name in ("truncated-half.x3p", "bomb-ratio.x3p", "constant.x3p",
                                                     "a-folder.x3p", "notes.txt")]
    path = tmp_path / "db"
    rc = main(["ingest", str(path), bad[0], str(good_files[0]), *bad[1:], str(good_files[1])])
    cap = capsys.readouterr()
    assert rc == 1
    assert "2 added, 0 already on file, 5 failed" in cap.out
    for b in bad:
        assert b in cap.err
    assert main(["check", str(path)]) == 0
    assert "2 exhibits" in capsys.readouterr().out


def test_library_refuses_metadata_that_is_not_text(db, good_files):
    from ibin import ingest

    before = db_state(db)
    for md in [{"case": 9}, {"case": None}, {"case": b"C-1"}, {"case": ["C-1"]}, {3: "x"}, {"case": "a\x00b"}]:
        with pytest.raises(DatabaseError):
            ingest(db, [good_files[1]], metadata=md)
    with pytest.raises(DatabaseError):
        ingest(db, [good_files[1]], ids=["bad\nid"])
    with pytest.raises(DatabaseError, match="not an ibin database"):
        ingest(good_files[0].parent, [good_files[1]])
    assert db_state(db) == before
