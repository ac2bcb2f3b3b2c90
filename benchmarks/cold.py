"""Lead lists from a feature store that is not in memory: with and without prefetching the candidates' records.

A national database's store does not fit in the page cache (~90 KB per
exhibit: 90 GB at 1M), so the ~450 records a lead list reads are mostly on
disk. Read one after another, each costs a disk round trip; since 2026-12-03
the search first asks the kernel for all of a stage's candidates at once
(:meth:`ibin.index.Database.prefetch`, ``madvise(MADV_WILLNEED)``). On the
planted database (``DIR/planted-pop-db-100k``), each query is searched in
three ways, alternating in one process:

* **warm**: the store as the previous searches left it in the page cache;
* **cold, prefetch**: the store's segment files evicted from the page cache
  (``posix_fadvise(DONTNEED)``, which spares pages a process has mapped: the
  worker pool is stopped, and its processes waited for, then started again
  and warmed by a search for another exhibit, and the store evicted once
  more, so that the timed search meets warm workers and a cold store, but
  for the records the warm-up search left mapped in the workers);
* **cold, one by one**: the same, with prefetching switched off.

Linux only (``posix_fadvise``, ``/proc``); the catalog, the indexes and the
program stay in memory in all three.

Run: ``python -m benchmarks.cold --work DIR [--db planted-pop-db-100k] [--queries 10] [--synthetic 6]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import (environment, planted_database, planted_queries, quantiles, restart_workers,  # noqa: E402
                      variant, write)

MODES = ("warm", "cold, prefetch", "cold, one by one")
STAGES = ("candidates", "screen", "rerank", "expand", "total")


def evict(db) -> int:
    """Drop the store's segment files from the page cache (unmapped pages only); returns the bytes concerned."""
    db.store.close()
    total = 0
    for seg in db.store.segments():
        path = db.store.segment_path(seg)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--db", default="planted-pop-db-100k", help="planted database under DIR")
    ap.add_argument("--queries", type=int, default=10, help="Fadul queries")
    ap.add_argument("--synthetic", type=int, default=6, help="synthetic queries (their mate is on file)")
    a = ap.parse_args(argv)
    if not hasattr(os, "posix_fadvise"):
        raise SystemExit("this benchmark needs posix_fadvise (Linux)")
    import ibin.index._store as store
    from ibin import SearchParams, _workers, open_database, search_exhibits

    name, option = variant("cold", "--db", a.db, "planted-pop-db-100k")
    env = environment(f"python -m benchmarks.cold --work {a.work} --queries {a.queries} --synthetic {a.synthetic}{option}")
    db = open_database(planted_database(a.work, a.db), readonly=True)
    recs = db.list(kind="cartridge")
    on_file = len(recs)
    fadul, syn = planted_queries(recs, a.queries, a.synthetic + 1, seed=3)
    warm_up, syn = syn[0], syn[1:]
    params = SearchParams()
    next(iter(search_exhibits(db, [warm_up], params=params)))  # indexes loaded, kernels compiled
    times = {m: {s: [] for s in STAGES} for m in MODES}
    same = True
    for i, q in enumerate(fadul + syn):
        # warm last (after the query's records were read in), the cold two in turn first
        order = (MODES[1], MODES[2], MODES[0]) if i % 2 == 0 else (MODES[2], MODES[1], MODES[0])
        leads = {}
        for m in order:
            if m != "warm":
                restart_workers(db, params, on_file, warm_up, before_start=lambda: evict(db))
                store_bytes = evict(db)
            store.PREFETCH = m != "cold, one by one"
            try:
                ll = next(iter(search_exhibits(db, [q], params=params)))
            finally:
                store.PREFETCH = True
            for s in STAGES:
                times[m][s].append(ll.timing_ms[s])
            leads[m] = [ld.id for ld in ll.leads]
        same &= len({tuple(v) for v in leads.values()}) == 1
    _workers.shutdown()
    db.close()
    out = {m: {s: quantiles(np.array(v)) for s, v in st.items()} for m, st in times.items()}
    result = {
        "what": __doc__.split("\n\n")[0], "environment": env, "database": a.db, "exhibits_on_file": on_file,
        "store_bytes": store_bytes, "queries": fadul + syn, "warm_up_query": warm_up, "lead_list_ms": out,
        "cold_one_by_one_over_cold_prefetch_p50": {s: out["cold, one by one"][s]["p50"] / out["cold, prefetch"][s]["p50"]
                                                   for s in STAGES},
        "cold_prefetch_over_warm_p50": {s: out["cold, prefetch"][s]["p50"] / out["warm"][s]["p50"] for s in STAGES},
        "same_leads_in_all_modes": same,
    }
    write(name, result)
    for m in MODES:
        print(f"{m:17s} " + "  ".join(f"{s} {v['p50']:.0f}" for s, v in out[m].items()) + " ms (p50)")
    print("one by one / prefetch: " + "  ".join(f"{s} {v:.2f}x" for s, v in
                                                result["cold_one_by_one_over_cold_prefetch_p50"].items()))
    print(f"same leads in all modes: {same}")
    return result


if __name__ == "__main__":
    main()
