"""A cold-case sweep as a lab runs it: ``ibin search DB --all --output FILE``, crashed, resumed, stopped.

The command runs as a user runs it (its own process, default options: every
core, libraries not pinned by the harness) on the 100,040-exhibit planted
database (``DIR/planted-pop-db-100k``, see :mod:`benchmarks.planted`). Leg 1
runs for ``--minutes`` and is killed with SIGKILL (a crash: no clean-up); leg 2
runs the same command again on the same FILE, which resumes, and is stopped
with SIGINT (Ctrl-C) after ``--minutes``. Reported: lead lists written per leg
and per hour over the whole run (start-up included), the time each leg took to
write its first list (loading the indexes; for leg 2 also reading FILE), the
exit code of the stop, and what FILE holds at the end: every line a lead list,
no query twice, the queries in the database's order with none skipped.

Run: ``python -m benchmarks.sweep_resume --work DIR [--db planted-pop-db-100k] [--minutes 30]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ._common import environment, variant, write


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.endswith(b"\n"))
    except FileNotFoundError:
        return 0


def _leg(cmd: list[str], out: Path, seconds: float, stop: int, log: Path) -> dict:
    before = _lines(out)
    t0 = time.monotonic()
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        first = None
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            if first is None and _lines(out) > before:
                first = time.monotonic() - t0
            if proc.poll() is not None:
                break
        ran = time.monotonic() - t0
        t_stop = time.monotonic()
        if proc.poll() is None:
            os.killpg(proc.pid, stop)  # the whole session: SIGKILL takes the workers too, as a crash would
        try:
            rc = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        stopped_s = time.monotonic() - t_stop
    after = _lines(out)
    return {"signal": signal.Signals(stop).name, "ran_s": ran, "first_list_s": first, "lists_written": after - before,
            "exit_code": rc, "stopped_within_s": stopped_s,
            "lists_per_hour_after_first": (after - before - 1) * 3600 / (ran - first) if first and after - before > 1 else None}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--db", default="planted-pop-db-100k", help="database under DIR to sweep")
    ap.add_argument("--minutes", type=float, default=30.0, help="length of each of the two legs")
    a = ap.parse_args(argv)
    # Ctrl-C must reach the command: a harness started in the background by a shell ignores SIGINT,
    # and a child would inherit that
    signal.signal(signal.SIGINT, signal.default_int_handler)
    db_path = a.work / a.db
    if not db_path.exists():
        raise SystemExit(f"{db_path}: no such database (made by python -m benchmarks.planted)")
    name, option = variant("sweep_resume", "--db", a.db, "planted-pop-db-100k")
    env = environment(f"python -m benchmarks.sweep_resume --work {a.work} --minutes {a.minutes:g}{option}")
    out = a.work / f"{name}.jsonl"
    log = a.work / f"{name}.stderr"
    for p in (out, log):
        if p.exists():
            p.unlink()
    cmd = [sys.executable, "-m", "ibin", "search", str(db_path), "--all", "--output", str(out)]
    legs = [_leg(cmd, out, 60 * a.minutes, signal.SIGKILL, log),
            _leg(cmd, out, 60 * a.minutes, signal.SIGINT, log)]
    from ibin import open_database

    db = open_database(db_path, readonly=True)
    order = [r.id for r in db.list(kind="cartridge")]
    db.close()
    ids, bad = [], 0
    for line in out.read_bytes().splitlines():
        try:
            ids.append(json.loads(line)["query"]["id"])
        except (ValueError, KeyError, TypeError):
            bad += 1
    total = sum(leg["lists_written"] for leg in legs)
    wall = sum(leg["ran_s"] for leg in legs)
    per_hour = total * 3600 / wall
    result = {
        "what": __doc__.split("\n\n")[0],
        "environment": env,
        "database": a.db,
        "exhibits_on_file": len(order),
        "command": " ".join(["ibin", *cmd[3:]]),
        "legs": legs,
        "file": {"lead_lists": len(ids), "unreadable_lines": bad, "distinct_queries": len(set(ids)),
                 "in_database_order_none_skipped": ids == order[: len(ids)]},
        "lists_per_hour_overall": per_hour,
        "projected_hours_for_all": len(order) / per_hour,
        "stderr_tail": log.read_text(errors="replace").splitlines()[-6:],
    }
    write(name, result)
    print(f"{total} lead lists in {wall / 60:.0f} min over two legs ({per_hour:.0f}/h, all {len(order)}: "
          f"{len(order) / per_hour:.1f} h); file: {len(ids)} lists, {len(set(ids))} distinct, {bad} unreadable, "
          f"in order: {result['file']['in_database_order_none_skipped']}; Ctrl-C exit code {legs[1]['exit_code']}")
    return result


if __name__ == "__main__":
    main()
