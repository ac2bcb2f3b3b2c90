"""Query expansion at 1M polar signatures: its screen floor and its leads searched side by side, each against its absence, in one process.

A lead list expands its identified leads (``ibin.engine._expand``): each
lead's own candidates are searched, the new ones screened against the query
and some compared in full. At N = 1M that was ~40 % of a lead list. Two
changes, each measured here against the code without it, on the same
queries, alternating in one process:

* **screen floor**: an added exhibit is compared in full only when its
  screen score reaches that of the last candidate the query's own screen
  sent to the full comparison (before: the best ``verify // 2`` added
  exhibits, whatever their score); variant ``no_floor``;
* **leads side by side**: the leads' candidate searches run together, one
  thread each (before: one after the other, each in the search's two
  threads); variant ``one_by_one``.

The database is the planted 100,040-exhibit one with its matrix of polar
signatures padded to ``--rows`` as in :mod:`benchmarks.padded` (same
padding, same seed). Reported per variant: lead-list stages (p50, p95), CPU
per list (this process and its worker processes), the full comparisons
expansion made per list, and the hits.

Run: ``python -m benchmarks.expansion --work DIR [--db planted-pop-db-100k] [--rows 1000000] [--synthetic 20]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import count_hit, environment, fadul_key, family_cpu_s, new_hits, planted_database, planted_queries, quantiles, write  # noqa: E402

STAGES = ("candidates", "screen", "rerank", "expand", "total")
VARIANTS = ("now", "no_floor", "one_by_one")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--db", default="planted-pop-db-100k", help="planted database under DIR")
    ap.add_argument("--rows", type=int, default=1_000_000, help="polar signatures after padding")
    ap.add_argument("--similarity", type=float, default=0.48)
    ap.add_argument("--synthetic", type=int, default=20)
    a = ap.parse_args(argv)
    import ibin.engine as engine
    from ibin import SearchParams, _workers, open_database, search_exhibits

    from .padded import pad_handle

    env = environment(f"python -m benchmarks.expansion --work {a.work} --db {a.db} --rows {a.rows} "
                      f"--similarity {a.similarity} --synthetic {a.synthetic}")
    db = open_database(planted_database(a.work, a.db), readonly=True)
    counts = pad_handle(db, a.rows, similarity=a.similarity)

    own_expand, own_many, own_rerank = engine._expand, engine._candidates_many, engine._rerank
    state = {"variant": "now", "in_expand": False, "compared": 0}

    def expand(*args, **kw):
        if state["variant"] == "no_floor":
            kw["screen_floor"] = None
        state["in_expand"] = True
        try:
            return own_expand(*args, **kw)
        finally:
            state["in_expand"] = False

    def candidates_many(db_, preps, kind, params, excludes):
        if state["variant"] == "one_by_one":
            return [own_many(db_, [p], kind, params, [e])[0] for p, e in zip(preps, excludes)]
        return own_many(db_, preps, kind, params, excludes)

    def rerank(q, records, *args, **kw):
        if state["in_expand"]:
            state["compared"] += len(records)
        return own_rerank(q, records, *args, **kw)

    engine._expand, engine._candidates_many, engine._rerank = expand, candidates_many, rerank

    key = fadul_key()
    fadul, syn = planted_queries(db.list(kind="cartridge"), len(key), a.synthetic, seed=2)
    params = SearchParams()
    next(iter(search_exhibits(db, [fadul[0]], params=params)))  # warm-up
    times = {v: {q: {s: [] for s in (*STAGES, "cpu", "compared_in_expansion")} for q in ("fadul", "synthetic")}
             for v in VARIANTS}
    hits = {v: new_hits() for v in VARIANTS}
    same_leads = 0
    for i, q in enumerate(fadul + syn):
        kind = "fadul" if q in key else "synthetic"
        order = VARIANTS[i % 3:] + VARIANTS[: i % 3]  # each variant first in turn
        leads = {}
        for v in order:
            state["variant"], state["compared"] = v, 0
            cpu = family_cpu_s()
            ll = next(iter(search_exhibits(db, [q], params=params)))
            t = times[v][kind]
            t["cpu"].append((family_cpu_s() - cpu) * 1e3)
            t["compared_in_expansion"].append(state["compared"])
            for s in STAGES:
                t[s].append(ll.timing_ms[s])
            leads[v] = ids = [ld.id for ld in ll.leads]
            count_hit(hits[v], q, ids, key)
        same_leads += leads["now"] == leads["one_by_one"]
    _workers.shutdown()
    engine._expand, engine._candidates_many, engine._rerank = own_expand, own_many, own_rerank
    out = {v: {k: {s: quantiles(np.array(x)) for s, x in by.items() if x} for k, by in t_.items()} for v, t_ in times.items()}
    ratio = {v: {k: {s: out[v][k][s]["p50"] / out["now"][k][s]["p50"] for s in ("expand", "total", "cpu")}
                 for k in out["now"] if out["now"][k]} for v in VARIANTS if v != "now"}
    result = {
        "what": __doc__.split("\n\n")[0], "environment": env, "database": a.db,
        "exhibits_on_file": db.count(kind="cartridge"),
        "polar_signatures": counts["padded"],
        "padding": {"similarity_to_source": a.similarity, "as": "benchmarks.padded"},
        "search_defaults": {"top": params.top, "candidates": params.candidates, "verify": params.verify,
                            "workers": params.workers},
        "queries": {"fadul": len(fadul), "synthetic": len(syn)},
        "variants": {"now": "screen floor, leads side by side (ibin as it is)",
                     "no_floor": "the best verify // 2 added exhibits compared in full, whatever their screen score",
                     "one_by_one": "the leads' candidate searches one after the other, each in two threads"},
        "lead_list_ms": out, "cpu": "ms of CPU per lead list, this process and its worker processes (/proc)",
        "p50_over_now": ratio, "hits": hits,
        "same_leads_now_and_one_by_one": f"{same_leads}/{len(fadul) + len(syn)}",
    }
    db.close()
    write("expansion", result)
    for k in ("fadul", "synthetic"):
        for v in VARIANTS:
            o = out[v][k]
            print(f"{k:9s} {v:10s} " + "  ".join(f"{s} {o[s]['p50']:.0f}" for s in (*STAGES, "cpu"))
                  + f" ms (p50); compared in expansion {np.mean(times[v][k]['compared_in_expansion']):.1f} per list")
    print(f"hits: {hits}; same leads now / one by one: {result['same_leads_now_and_one_by_one']}")
    return result


if __name__ == "__main__":
    main()
