"""ibin's lead list against a brute-force re-rank of the whole database, side by side.

A database of N = 1,000 cartridge cases (the 40 Fadul scans and 480 synthetic
firearms x 2 through the real pipeline, :func:`benchmarks.population.build_database`).
For each query exhibit, in the same process: (a) ibin's default search
(candidates, screen, full comparison, expansion) and (b) the full comparison
(:func:`ibin.correlate.compare_prepared`) of the query with every other exhibit
on file, on the same two cores: two worker processes that hold every exhibit
prepared (ibin's search runs its screen and comparisons in two worker
processes; until 2026-12-03 both sides ran in two threads). Reported: the
time ratio, and whether both put the same exhibits in the top 10 and the
true mates first.

Run: ``python -m benchmarks.brute_force --work DIR [--queries 10]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from multiprocessing import get_context  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import SHARED, environment, fadul_key, quantiles, write  # noqa: E402


_BF: dict = {}


def _bf_init(path: str) -> None:
    """Brute-force worker: every exhibit on file prepared, with its pyramid (outside the timings)."""
    from ibin import load_prepared
    from ibin._workers import worker_database
    from ibin.correlate import Pyramid

    db = worker_database(path)  # as ibin's own workers start
    for r in db.list(kind="cartridge"):
        p = load_prepared(db, r.id)
        _BF[r.id] = (p, Pyramid(p.surface, p.pixel_um))
    db.close()


def _bf_task(task) -> list[tuple[float, str]]:
    from ibin.correlate import compare_prepared

    q, others = task
    (pq, yq) = _BF[q]
    return [(compare_prepared(pq, _BF[o][0], pyramids=(yq, _BF[o][1])).score, o) for o in others]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=10, help="queries: half Fadul, half synthetic")
    ap.add_argument("--firearms", type=int, default=480)
    a = ap.parse_args(argv)
    from ibin import SearchParams, ingest, open_database, search_exhibits

    from .population import build_database

    env = environment(f"python -m benchmarks.brute_force --work {a.work} --queries {a.queries}")
    path = a.work / "bf-db"
    build_database(path, a.firearms, 2, first_firearm=40_000_000)
    d = SHARED / "cartridge" / "fadul"
    key = fadul_key(d)
    db = open_database(path)
    ingest(db, [d / f"{n}.x3p" for n in sorted(key)])
    recs = db.list(kind="cartridge")
    firearm = {r.id: r.metadata.get("firearm", key.get(r.id)) for r in recs}
    for n in key:
        firearm[n] = key[n]
    params = SearchParams()
    rng = np.random.default_rng(5)
    syn = [r.id for r in recs if r.id.startswith("syn-")]
    queries = list(rng.choice(sorted(key), a.queries // 2, replace=False)) + \
        list(rng.choice(syn, a.queries - a.queries // 2, replace=False))
    # the brute force's workers prepare everything on file once, outside both timings (a long-running
    # service has them loaded)
    brute = ProcessPoolExecutor(params.workers, mp_context=get_context("spawn"), initializer=_bf_init,
                                initargs=(str(path),))
    list(brute.map(_bf_task, [(queries[0], [])] * params.workers))
    next(iter(search_exhibits(db, [queries[0]], params=params)))  # warm-up: indexes, Numba, ibin's workers
    rows = []
    for q in queries:
        t = time.perf_counter()
        ll = next(iter(search_exhibits(db, [q], params=params)))
        t_ibin = time.perf_counter() - t

        others = [r.id for r in recs if r.id != q]
        t = time.perf_counter()
        parts = brute.map(_bf_task, [(q, others[i::32]) for i in range(32)])
        scored = sorted((s for part in parts for s in part), key=lambda t: (-t[0], t[1]))
        t_brute = time.perf_counter() - t
        top_i = [l.id for l in ll.leads[:10]]
        top_b = [i for _, i in scored[:10]]
        mates = {i for i in firearm if i != q and firearm[i] == firearm[q]}
        rows.append({"query": q, "ibin_s": t_ibin, "brute_force_s": t_brute, "ratio": t_ibin / t_brute,
                     "top10_overlap": len(set(top_i) & set(top_b)), "same_top1": top_i[:1] == top_b[:1],
                     "mates": len(mates), "mates_in_top10_ibin": len(mates & set(top_i)),
                     "mates_in_top10_brute": len(mates & set(top_b))})
        print(f"{q}: ibin {t_ibin:.2f} s, brute force {t_brute:.1f} s, top-10 overlap {rows[-1]['top10_overlap']}, "
              f"mates in top 10 {rows[-1]['mates_in_top10_ibin']}/{rows[-1]['mates_in_top10_brute']}", flush=True)
    n_on_file = len(recs)
    brute.shutdown()
    db.close()
    result = {
        "what": __doc__.split("\n\n")[0], "environment": env, "exhibits_on_file": n_on_file,
        "search_defaults": {"top": params.top, "candidates": params.candidates, "verify": params.verify,
                            "workers": params.workers},
        "ibin_s": quantiles([r["ibin_s"] for r in rows]), "brute_force_s": quantiles([r["brute_force_s"] for r in rows]),
        "ratio_median": float(np.median([r["ratio"] for r in rows])),
        "same_top1": int(sum(r["same_top1"] for r in rows)),
        "mates_in_top10": {"ibin": int(sum(r["mates_in_top10_ibin"] for r in rows)),
                           "brute_force": int(sum(r["mates_in_top10_brute"] for r in rows)),
                           "all": int(sum(min(r["mates"], 10) for r in rows))},
        "per_query": rows,
    }
    write("brute_force", result)
    print(f"N={n_on_file}: ibin lead list median {result['ibin_s']['p50']:.2f} s, brute force "
          f"{result['brute_force_s']['p50']:.1f} s (ratio {result['ratio_median']:.3f}); mates in top 10 "
          f"{result['mates_in_top10']['ibin']} vs {result['mates_in_top10']['brute_force']}")
    return result


if __name__ == "__main__":
    main()
