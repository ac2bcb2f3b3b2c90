"""A lead list's screen and full comparisons in one thread, in two threads, and in two worker processes.

In one process, the same Fadul lead lists (each query searched on its own,
as a new exhibit is) are made in turn with ``workers=1``, with two threads
(the engine's behaviour before 2026-12-03) and with two worker processes
(:mod:`ibin._workers`, the default since), alternating, on a planted
database (``DIR/planted-db`` or ``--db NAME``, made by
:mod:`benchmarks.planted`), for Fadul queries and a seeded sample of
synthetic ones. Reported per stage: medians and p95 of each
mode, their ratios, whether all three gave the same leads in the same
order (scores may differ in the last digits between one worker and two:
the native libraries run single-threaded under two workers), and what
starting the worker processes costs.

Run: ``python -m benchmarks.workers --work DIR [--db planted-db] [--queries 8] [--synthetic 8] [--repeats 3]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import environment, planted_database, planted_queries, quantiles, variant, write  # noqa: E402

MODES = ("one thread", "two threads", "two processes")


@contextlib.contextmanager
def _mode(name: str):
    """``workers`` for the mode; two threads = worker processes switched off."""
    import ibin._workers as wk

    saved = wk.MIN_EXHIBITS
    if name == "two threads":
        wk.MIN_EXHIBITS = 1 << 62
    try:
        yield 1 if name == "one thread" else 2
    finally:
        wk.MIN_EXHIBITS = saved


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--db", default="planted-db", help="planted database under DIR")
    ap.add_argument("--queries", type=int, default=8, help="Fadul queries")
    ap.add_argument("--synthetic", type=int, default=8, help="synthetic queries (their mate is on file)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    from ibin import SearchParams, _workers, open_database, search_exhibits

    name, option = variant("workers", "--db", a.db, "planted-db")
    env = environment(f"python -m benchmarks.workers --work {a.work} --queries {a.queries} --synthetic {a.synthetic} "
                      f"--repeats {a.repeats}{option}")
    db = open_database(planted_database(a.work, a.db), readonly=True)
    recs = db.list(kind="cartridge")
    fadul, syn = planted_queries(recs, a.queries, a.synthetic, seed=0)
    ids = fadul + syn
    # the pool's start: spawn, imports, database opened, in every worker
    t = time.perf_counter()
    pool = _workers.Pool(str(db.path), 2)
    pool.map(_workers._ready, range(4))
    start_ms = (time.perf_counter() - t) * 1e3
    pool.close()

    stages = ("candidates", "screen", "rerank", "expand", "total")
    sets = {"fadul": set(fadul), "synthetic": set(syn)}
    times: dict = {m: {q: {s: [] for s in stages} for q in sets} for m in MODES}
    lists: dict = {m: [] for m in MODES}
    for rep in range(a.repeats + 1):  # the first round warms up (compilation, caches, the pool)
        for m in MODES:
            with _mode(m) as w:
                params = SearchParams(workers=w)
                got = [ll for i in ids for ll in search_exhibits(db, [i], params=params)]
            if rep == 0:
                lists[m] = [[(ld.id, ld.score) for ld in ll.leads] for ll in got]
                continue
            for ll in got:
                q = "fadul" if ll.query_id in sets["fadul"] else "synthetic"
                for s in stages:
                    times[m][q][s].append(ll.timing_ms[s])
    _workers.shutdown()
    out = {m: {q: {s: quantiles(np.array(v)) for s, v in st.items() if v} for q, st in by.items()}
           for m, by in times.items()}
    pairs = [(f"{m} / one thread", m, "one thread") for m in MODES[1:]]
    pairs.append(("two processes / two threads", "two processes", "two threads"))
    ratio = {name: {q: {s: out[x][q][s]["p50"] / out[y][q][s]["p50"] for s in out[x][q]} for q in out[x]}
             for name, x, y in pairs}
    result = {
        "what": __doc__.split("\n\n")[0], "environment": env,
        "database": a.db, "exhibits_on_file": db.count(kind="cartridge"), "queries": ids,
        "repeats": a.repeats, "pool_start_ms": start_ms,
        "same_leads_in_same_order": len({str([[i for i, _ in ll] for ll in lists[m]]) for m in MODES}) == 1,
        "two_processes_scores_equal_two_threads": lists["two processes"] == lists["two threads"],
        "max_score_difference_to_one_thread": max(
            abs(x[1] - y[1]) for m in MODES[1:] for a_, b_ in zip(lists[m], lists["one thread"]) for x, y in zip(a_, b_)),
        "lead_list_ms": out, "ratios_p50": ratio,
    }
    db.close()
    write(name, result)
    for q in sets:
        for m in MODES:
            if q in out[m]:
                print(f"{q:9s} {m:14s} " + "  ".join(f"{s} {v['p50']:.0f}" for s, v in out[m][q].items()) + " ms (p50)")
        for k, v in ratio.items():
            if q in v:
                print(f"{q:9s} {k}: " + "  ".join(f"{s} {x:.2f}x" for s, x in v[q].items()))
    print(f"same leads in the same order: {result['same_leads_in_same_order']}; scores of processes = threads: "
          f"{result['two_processes_scores_equal_two_threads']}; largest score difference to one thread: "
          f"{result['max_score_difference_to_one_thread']:.1e}; pool start {start_ms:.0f} ms")
    return result


if __name__ == "__main__":
    main()
