"""How long ``ibin report`` takes for a Fadul query, and how big the report is.

    .venv/bin/python -m benchmarks.report_speed [--repeat 5] [--pictures 3]

Builds a database of the eight known Fadul exhibits shipped in ``data/fadul``
(in a temporary folder), then runs the whole command, as an examiner would,
for the questioned case Fadul_F (a scan file) and for the exhibit Fadul_1-1
(``--id``): process start, imports, search, pictures, HTML; and, for scale
on the same machine at the same time, ``ibin search`` of the same query
(the lead list alone). Wall time is
what the examiner waits; CPU time (user + system) is what it costs, and is
less disturbed by other work on a shared machine. The load average before
and after each run is recorded with the results
(``benchmarks/results/report_speed.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pictures", type=int, default=3, help="leads drawn (default 3, as ibin report)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "report_speed.json")
    args = ap.parse_args(argv)
    ibin = str(Path(sys.executable).with_name("ibin"))
    from ibin.data import SAMPLES, sample_path
    from ibin.engine import ingest, open_database

    results = {"command": " ".join([Path(sys.executable).name, "-m", "benchmarks.report_speed", *(argv or sys.argv[1:])]),
               "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
               "runs": {}}
    with tempfile.TemporaryDirectory(prefix="ibin-bench-") as tmp:
        db_path = Path(tmp) / "db"
        db = open_database(db_path, create=True)
        ingest(db, [sample_path(n) for n, (_, role, _) in SAMPLES.items() if role == "known"])
        db.close()
        fadul_f = sample_path("Fadul_F.x3p")
        queries = {"Fadul_F (scan file)": [str(fadul_f)], "Fadul_1-1 (--id)": ["--id", "Fadul_1-1"]}
        shown = {str(fadul_f): str(fadul_f.relative_to(ROOT)) if fadul_f.is_relative_to(ROOT) else fadul_f.name}
        out = Path(tmp) / "report.html"
        for name, q in queries.items():
            jobs = {
                "report": [ibin, "report", str(db_path), *q, "-o", str(out), "--pictures", str(args.pictures)],
                "search": [ibin, "search", str(db_path), *q],
            }
            entry = {}
            for job, cmd in jobs.items():
                _run(cmd)  # warm the file cache and Numba's compiled-function cache
                walls, cpus, loads = [], [], []
                for _ in range(args.repeat):
                    load0 = os.getloadavg()[0]
                    w, c = _run(cmd)
                    walls.append(w)
                    cpus.append(c)
                    loads.append(round((load0 + os.getloadavg()[0]) / 2, 2))
                entry[job] = {
                    "cmd": " ".join(["ibin", *[("DB" if a == str(db_path) else "report.html" if a == str(out) else
                                               shown.get(a, a)) for a in cmd[1:]]]),
                    "wall_s": {"min": round(min(walls), 2), "median": round(statistics.median(walls), 2),
                               "all": [round(v, 2) for v in walls]},
                    "cpu_s": {"min": round(min(cpus), 2), "median": round(statistics.median(cpus), 2)},
                    "load_average": loads,
                }
                print(f"{name} {job}: wall min {min(walls):.2f} s, median {statistics.median(walls):.2f} s; "
                      f"CPU min {min(cpus):.2f} s; load {loads}")
            entry["report"]["html_bytes"] = out.stat().st_size
            print(f"{name}: report {out.stat().st_size / 1e6:.2f} MB")
            results["runs"][name] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
