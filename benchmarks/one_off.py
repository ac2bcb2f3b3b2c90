"""One-off searches: a process that makes one lead list and ends, with worker processes or threads.

An examiner's ``ibin search DB --id X`` (or with one scan file) starts a
Python process that makes one lead list. A search hands its screen and full
comparisons to worker processes on databases of 1,000 exhibits and more,
kept for the process's later searches (:mod:`ibin._workers`): in a lab
pipeline or a sweep they make lead lists 0.67x as long as threads
(``workers_planted_pop_db_100k.json``). A process that makes one lead list
pays for starting them (each imports the scientific stack) and keeps none of
their later gain. Since 2026-12-03 ``SearchParams(one_off=True)`` keeps such
a search in threads, and ``ibin search`` sets it for one scan or one
``--id``.

Each run is a fresh Python process that imports ibin, opens the database
and makes one lead list for one Fadul exhibit (default parameters), with
``one_off`` True (threads) or False (worker processes, as before), the two
alternating; the wall time is the whole process, start to exit, as an
examiner waits for it. CPU is the process's and its workers' (``/proc``,
read before it ends). The leads of both must be the same.

Run: ``python -m benchmarks.one_off --work DIR [--dbs planted-db,planted-pop-db-100k] [--queries 8]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import ROOT, environment, planted_database, planted_queries, quantiles, write  # noqa: E402

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from benchmarks._common import family_cpu_s, worker_processes  # standard library only: nothing pinned
from ibin import _workers, open_database, search_exhibits
from ibin.engine import SearchParams

db = open_database(sys.argv[1])
ll = next(iter(search_exhibits(db, [sys.argv[2]], params=SearchParams(one_off=sys.argv[3] == "threads"))))
t1 = time.perf_counter()
out = {"in_process_s": t1 - t0, "cpu_s": family_cpu_s(), "worker_processes": len(worker_processes()),
       "leads": [l.id for l in ll.leads], "timing_ms": ll.timing_ms}
_workers.shutdown()
db.close()
print(json.dumps(out))
"""


def _one(db: Path, query: str, mode: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env.pop(var, None)  # as a user's process: native libraries not pinned (ibin pins them where it needs)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, str(db), query, mode], capture_output=True, text=True,
                         env=env, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    got["wall_s"] = time.perf_counter() - t
    return got


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--dbs", default="planted-db,planted-pop-db-100k")
    ap.add_argument("--queries", type=int, default=8, help="Fadul exhibits searched per database and mode")
    a = ap.parse_args(argv)
    env = environment(f"python -m benchmarks.one_off --work {a.work} --dbs {a.dbs} --queries {a.queries}")
    from ibin import open_database

    names = a.dbs.split(",")
    with open_database(planted_database(a.work, names[0]), readonly=True) as first:
        queries, _ = planted_queries(first.list(kind="cartridge"), a.queries, 0, seed=0)  # the same Fadul exhibits in each
    modes = ("threads", "processes")
    result = {"what": __doc__.split("\n\n")[0], "environment": env, "queries": queries, "databases": {}}
    for name in names:
        db = planted_database(a.work, name)
        runs = {m: [] for m in modes}
        same = 0
        for i, q in enumerate(queries):
            got = {}
            for m in (modes if i % 2 == 0 else modes[::-1]):
                got[m] = _one(db, q, m)
                runs[m].append(got[m])
            same += got["threads"]["leads"] == got["processes"]["leads"]
        out = {m: {"wall_s": quantiles([r["wall_s"] for r in rs]), "cpu_s": quantiles([r["cpu_s"] for r in rs]),
                   "worker_processes": sorted({r["worker_processes"] for r in rs}),
                   "stages_ms_p50": {s: float(np.median([r["timing_ms"][s] for r in rs]))
                                     for s in rs[0]["timing_ms"]},
                   "wall_s_all": [round(r["wall_s"], 2) for r in rs]}
               for m, rs in runs.items()}
        out["processes_over_threads_wall_p50"] = out["processes"]["wall_s"]["p50"] / out["threads"]["wall_s"]["p50"]
        out["same_leads"] = f"{same}/{len(queries)}"
        result["databases"][name] = out
        print(f"{name}: one-off lead list in threads {out['threads']['wall_s']['p50']:.2f} s p50, "
              f"in worker processes {out['processes']['wall_s']['p50']:.2f} s "
              f"({out['processes_over_threads_wall_p50']:.2f}x); same leads {same}/{len(queries)}", flush=True)
    write("one_off", result)
    return result


if __name__ == "__main__":
    main()
