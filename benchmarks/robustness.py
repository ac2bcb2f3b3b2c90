"""Robustness of the database: kills survived, malformed inputs refused, damage detected, exhibits lost.

* fault injection: writers of a database killed (SIGKILL) at every named
  point of the write path and after random delays, the database verified
  after every kill (``tests/_crash_harness.py``): kills, kills survived,
  exhibits acknowledged, exhibits lost;
* malformed inputs: every file of the corpus in ``tests/_malformed.py``
  given to ``ibin ingest`` against a database with exhibits on file: how many
  were refused with a message naming the file and the problem, and whether
  the database stayed byte-for-byte unchanged (every file except SQLite's
  ``-shm``);
* damage detection: a feature record, an index file, an audit entry and a
  metadata value corrupted on purpose, one at a time: does ``ibin check``
  report each precisely (and pass on the healthy database)?

Run from the project root: ``python -m benchmarks.robustness [--point-trials N --delay-trials M]``;
writes ``benchmarks/results/robustness.json``.
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from ._common import environment, write  # noqa: E402


def crash_campaign(tmp: Path, point_trials: int, delay_trials: int, seed: int) -> dict:
    from tests.test_robust_crash import run_campaign

    return run_campaign(tmp / "crash-db", point_trials=point_trials, delay_trials=delay_trials, seed=seed)


def malformed(tmp: Path) -> dict:
    from ibin.cli import main
    from ibin.scan import save_x3p
    from ibin.synth import cartridge_case
    from tests._malformed import build
    from tests.test_robust_input import db_state

    cases = build(tmp / "corpus")
    db = tmp / "input-db"
    good = tmp / "good.x3p"
    save_x3p(cartridge_case(1, 0, pixel_um=12.5)[0], good)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["ingest", str(db), str(good)]) == 0
        assert main(["search", str(db), str(good)]) == 0
    before = db_state(db)
    refused, changed, unclear = 0, [], []
    t0 = time.perf_counter()
    for c in cases:
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                rc = main(["ingest", str(db), *c.args])
            except SystemExit as e:
                rc = e.code
        msg = err.getvalue()
        ok_msg = re.search(c.expect, msg, re.I) and (c.file is None or str(c.file) in msg)
        if rc != 0 and ok_msg:
            refused += 1
        else:
            unclear.append(c.name)
        if db_state(db) != before:
            changed.append(c.name)
            before = db_state(db)
    return {"inputs": len(cases), "refused_cleanly": refused, "not_refused_or_unclear": unclear,
            "database_changed_by": changed, "seconds": round(time.perf_counter() - t0, 2)}


def damage_detection(tmp: Path) -> dict:
    import numpy as np

    from ibin.index import Database, NewExhibit

    def fresh() -> Path:
        path = tmp / f"damage-{time.perf_counter_ns()}"
        with Database.create(path) as db:
            for i in range(20):
                rng = np.random.default_rng(i)
                v = rng.normal(size=32).astype(np.float32)
                v /= np.linalg.norm(v)
                db.add(NewExhibit(id=f"ex{i}", kind="cartridge", modality="height", source_name=f"ex{i}.x3p",
                                  source_sha256=f"{i:064x}",
                                  arrays={"s": rng.integers(-127, 128, (60, 60), dtype=np.int8)}, attrs={},
                                  vectors={"cartridge/height": v[None]}, metadata={"case": "C"}, user="bench"))
            db.index("cartridge/height")
        return path

    def flip(path: Path, offset: int) -> None:
        b = bytearray(path.read_bytes())
        b[offset] ^= 0x01
        path.write_bytes(bytes(b))

    def sql(path: Path, *stmts: str) -> None:
        conn = sqlite3.connect(path / "catalog.sqlite")
        for s in stmts:
            conn.execute(s)
        conn.commit()
        conn.close()

    def check(path: Path):
        with Database.open(path, readonly=True) as db:
            return db.check()

    out = {}
    healthy = fresh()
    out["healthy database passes"] = check(healthy).ok
    scenarios = {
        "one bit of a feature record": lambda p: flip(p / "store" / "seg-000001.ibf", 64 * 40 + 700),
        "one bit of the index file": lambda p: flip(p / "index" / "cartridge-height.faiss", -10),
        "segment truncated": lambda p: (p / "store" / "seg-000001.ibf").open("r+b").truncate(3000),
        "audit entry rewritten": lambda p: sql(p, "DROP TRIGGER audit_no_update",
                                               "UPDATE audit SET user = 'mallory' WHERE seq = 4"),
        "metadata changed outside ibin": lambda p: sql(p, "UPDATE metadata SET value = 'X' WHERE exhibit = 3"),
        "exhibit removed outside ibin": lambda p: sql(p, "PRAGMA foreign_keys=ON", "DELETE FROM exhibits WHERE rowid = 5"),
    }
    for name, damage in scenarios.items():
        p = tmp / f"s-{len(out)}"
        shutil.copytree(healthy, p)
        damage(p)
        rep = check(p)
        out[name] = {"detected": not rep.ok, "report": [str(f) for f in rep.damage][:3]}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--point-trials", type=int, default=120)
    ap.add_argument("--delay-trials", type=int, default=80)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    env = environment(f"python -m benchmarks.robustness --point-trials {args.point_trials} "
                      f"--delay-trials {args.delay_trials} --seed {args.seed}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        crash = crash_campaign(tmp, args.point_trials, args.delay_trials, args.seed)
        bad = malformed(tmp)
        damage = damage_detection(tmp)
    summary = {
        "kills": crash["kills"], "kills_survived": crash["kills_survived"],
        "exhibits_acknowledged": crash["exhibits_acknowledged"], "exhibits_lost": crash["exhibits_lost"],
        "malformed_inputs": bad["inputs"], "inputs_refused_cleanly": bad["refused_cleanly"],
        "database_changed_by_refused_input": len(bad["database_changed_by"]),
        "damage_scenarios_detected": sum(1 for v in damage.values() if isinstance(v, dict) and v["detected"]),
        "damage_scenarios": sum(1 for v in damage.values() if isinstance(v, dict)),
    }
    payload = {"environment": env, "summary": summary, "crash": crash, "malformed": bad, "damage": damage}
    out = write("robustness", payload)
    for k, v in summary.items():
        print(f"{k:36s} {v}")
    print(f"written to {out}")
    return payload


if __name__ == "__main__":
    main()
