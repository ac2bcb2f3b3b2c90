"""Concurrency: two ``ibin ingest`` processes on one database at once, searches meanwhile; a writer
that has to wait says so; an ``ibin ingest`` killed mid-batch leaves a database that checks clean and
a re-run completes it."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ibin.cli import main
from ibin.index import Database
from ibin.scan import save_x3p
from ibin.synth import cartridge_case

IBIN = [sys.executable, "-c", "import sys; from ibin.cli import main; sys.exit(main(sys.argv[1:]))"]

# Searches in a loop while the ingests run; prints one JSON line per lead list.
SEARCHER = r"""
import json, sys, time
from pathlib import Path
from ibin import SearchParams, open_database, search
db_path, query, stop = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
while not (db_path / "ibin-db.json").exists():
    time.sleep(0.05)
n = 0
while not stop.exists() or n == 0:
    with open_database(db_path) as db:
        ll = search(db, query, params=SearchParams(top=3, candidates=3), user="searcher")
    print(json.dumps({"on_file": ll.database_exhibits, "leads": [l.id for l in ll.leads]}), flush=True)
    n += 1
"""


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("scans")
    out = []
    for f in range(4):
        for s in range(2):
            p = d / f"f{f}-s{s}.x3p"
            save_x3p(cartridge_case(400 + f, s, pixel_um=12.5)[0], p)
            out.append(p)
    query = d / "query.x3p"
    save_x3p(cartridge_case(401, 5, pixel_um=12.5)[0], query)
    return out + [query]


@pytest.mark.slow
def test_two_ingests_and_searches_at_once(tmp_path, scans):
    db = tmp_path / "db"  # does not exist: both ingests race to create it
    files, query = scans[:8], scans[8]
    stop = tmp_path / "stop"
    searcher = subprocess.Popen([sys.executable, "-c", SEARCHER, str(db), str(query), str(stop)], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ingests = [subprocess.Popen([*IBIN, "ingest", str(db), *map(str, part), "--user", user], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for part, user in ((files[0::2], "alice"), (files[1::2], "bob"))]
    outs = [p.communicate(timeout=300) for p in ingests]
    stop.touch()
    s_out, s_err = searcher.communicate(timeout=300)
    for p, (out, err) in zip(ingests, outs):
        assert p.returncode == 0, err
        assert "4 added, 0 already on file, 0 failed" in out
    assert searcher.returncode == 0, s_err
    lists = [json.loads(line) for line in s_out.splitlines()]
    with Database.open(db, readonly=True) as d:
        on_file = {r.id for r in d.list()}
        rep = d.check()
        ingested = d.audit_log(event="ingest")
        searches = d.audit_log(event="search")
    assert on_file == {p.stem for p in files}
    assert rep.ok, "\n".join(map(str, rep.damage))
    assert sorted(e.user for e in ingested) == ["alice"] * 4 + ["bob"] * 4
    assert len(searches) == len(lists) >= 1 and {e.user for e in searches} == {"searcher"}
    counts = [ll["on_file"] for ll in lists]
    assert counts == sorted(counts), "a later search saw fewer exhibits than an earlier one"
    for ll in lists:  # every lead is a complete exhibit; the same-firearm mate leads once on file
        assert set(ll["leads"]) <= on_file and len(ll["leads"]) == min(3, ll["on_file"])
    final = lists[-1]
    if final["on_file"] == 8:
        assert final["leads"][0] in ("f1-s0", "f1-s1")


def test_a_waiting_writer_says_so_and_then_succeeds(tmp_path, scans, monkeypatch):
    db = tmp_path / "db"
    assert main(["ingest", str(db), str(scans[0])]) == 0
    holder = sqlite3.connect(db / "catalog.sqlite", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process's long write
    waiting = threading.Event()

    class Tee(io.StringIO):
        def write(self, s):
            if "waiting for another process" in s:
                waiting.set()
            return super().write(s)

    err = Tee()
    monkeypatch.setattr(sys, "stderr", err)

    def release():
        waiting.wait(60)
        holder.execute("COMMIT")

    t = threading.Thread(target=release)
    t.start()
    t0 = time.monotonic()
    rc = main(["ingest", str(db), str(scans[1])])
    t.join()
    holder.close()
    assert rc == 0 and waiting.is_set()
    assert f"waiting for another process writing to {db}" in err.getvalue()
    assert time.monotonic() - t0 >= 1.5
    with Database.open(db, readonly=True) as d:
        assert d.count() == 2


@pytest.mark.slow
def test_killed_cli_ingest_then_rerun(tmp_path, scans):
    """``ibin ingest`` killed at random moments: the database checks clean each time; a re-run completes it."""
    db = tmp_path / "db"
    files = [str(p) for p in scans[:8]]
    rng = random.Random(3)
    kills = 0
    for _ in range(3):
        p = subprocess.Popen([*IBIN, "ingest", str(db), *files], env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # after start-up, somewhere in the batch (preparation or writing)
        deadline = time.monotonic() + 60
        while not (db / "ibin-db.json").exists() and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
        if (db / "ibin-db.json").exists():
            with Database.open(db, readonly=True) as d:
                rep = d.check()
            assert rep.ok, "\n".join(map(str, rep.damage))
    assert kills >= 1
    r = subprocess.run([*IBIN, "ingest", str(db), *files], env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with Database.open(db, readonly=True) as d:
        assert {x.id for x in d.list()} == {Path(f).stem for f in files}
        assert d.check().ok
