"""Cold-case sweep throughput: every exhibit against the database, in worker processes.

A sample of the exhibits of the 20k planted database (``DIR/planted-db``, see
:mod:`benchmarks.planted`) is swept with :func:`ibin.search_exhibits`
(``processes`` = 1 and 2, the machine's cores), as ``ibin search DB --all``
does for all of them. Reported: lead lists per hour, the speed-up of two
processes over one, peak memory of a worker, and the projected time of a
sweep of 100,000 exhibits (the per-query time at 20k scaled by the
candidate-stage growth measured in ``scale.json``, when present).

With ``--db NAME`` the sample is drawn from DIR/NAME instead (e.g.
``planted-pop-db-100k``, made by ``planted --population pop-db-100k``) and the
result is written as ``sweep_NAME.json`` (``-`` as ``_``).

Run: ``python -m benchmarks.sweep --work DIR [--sample 60] [--db planted-db]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import RESULTS, environment, variant, write  # noqa: E402


def projection(seconds_per_list: float, n_on_file: int, n: int = 100_000) -> dict | None:
    """Hours for a sweep of ``n`` exhibits over 2 processes: the measured time per lead list plus the
    candidate stage's growth from ``n_on_file`` to ``n`` (interpolated in ``scale.json``)."""
    sc = RESULTS / "scale.json"
    if not sc.exists():
        return None
    curves = sorted((c["N"], c["candidate_ms"]["p50"]) for c in json.loads(sc.read_text()).get("curves", []))
    if len(curves) < 2:
        return None
    N, t = np.array(curves, dtype=float).T
    extra_s = float(np.interp(n, N, t) - np.interp(n_on_file, N, t)) / 1e3
    per_list = seconds_per_list + extra_s / 2  # two processes share the extra candidate time
    return {"exhibits": n, "hours_2_processes": n * per_list / 3600,
            "how": f"sampled time per lead list at N = {n_on_file} (2 processes) plus the candidate-stage "
                   f"growth to N = {n} interpolated in scale.json, shared by the 2 processes"}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--sample", type=int, default=60)
    ap.add_argument("--db", default="planted-db", help="database under DIR to sample and search")
    a = ap.parse_args(argv)
    from ibin import SearchParams, open_database, search_exhibits

    name, option = variant("sweep", "--db", a.db, "planted-db")
    env = environment(f"python -m benchmarks.sweep --work {a.work} --sample {a.sample}{option}")
    if not (a.work / a.db).exists():
        raise SystemExit(f"{a.work / a.db}: no such database (made by python -m benchmarks.planted)")
    db = open_database(a.work / a.db, readonly=True)
    recs = db.list(kind="cartridge")
    rng = np.random.default_rng(9)
    ids = [recs[i].id for i in sorted(rng.choice(len(recs), a.sample, replace=False))]
    params = SearchParams()
    runs = {}
    for procs in (1, 2):
        t = time.perf_counter()
        n = sum(1 for _ in search_exhibits(db, ids, params=params, processes=procs))
        runs[procs] = time.perf_counter() - t
        assert n == len(ids)
    peak_worker_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    n_on_file = len(recs)
    db.close()
    per_hour = {p: 3600 * len(ids) / s for p, s in runs.items()}
    proj = projection(runs[2] / len(ids), n_on_file)
    result = {"what": __doc__.split("\n\n")[0], "environment": env, "database": a.db, "exhibits_on_file": n_on_file,
              "queries": len(ids), "seconds": runs, "lead_lists_per_hour": per_hour,
              "speedup_2_processes": runs[1] / runs[2], "peak_worker_rss_mib": peak_worker_mib,
              "projection_100k": proj}
    write(name, result)
    print(f"sweep of {len(ids)} in {n_on_file}: {per_hour[1]:.0f}/h one process, {per_hour[2]:.0f}/h two "
          f"({result['speedup_2_processes']:.2f}x); worker peak {peak_worker_mib:.0f} MiB"
          + (f"; 100k sweep ~{proj['hours_2_processes']:.0f} h" if proj else ""))
    return result


if __name__ == "__main__":
    main()
