"""Fadul planted in a large population: do the real mates still come first?

The 40 Fadul scans are ingested into a copy of the full-pipeline synthetic
population database (``DIR/pop-db``, 20,000 exhibits; see
:mod:`benchmarks.population`), and every Fadul exhibit's lead list is made
against all 20,040 exhibits with the default search (index candidates,
coarse screen, full comparison of the best). Top-1 and top-10 hit rates are
compared with the same lead lists at N = 40 (``fadul_accuracy.json``), and
the lead-list latency is reported per stage (each query searched on its own,
as a new exhibit is: no comparison shared between lead lists). A sample of synthetic
exhibits is searched too (their one mate is in the population).

With ``--population NAME`` the population is DIR/NAME (e.g. the 100,000
exhibits of ``scale_build --db pop-db-100k --firearms 50000``) and the result
is written as ``planted_NAME.json`` (``-`` as ``_``).

Run: ``python -m benchmarks.planted --work DIR [--synthetic 50] [--population pop-db]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import RESULTS, SHARED, environment, fadul_key, quantiles, variant, write  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--reuse", action="store_true", help="reuse the planted copy (DIR/planted-db) from an earlier run")
    ap.add_argument("--synthetic", type=int, default=50, help="synthetic queries (their mate is on file)")
    ap.add_argument("--population", default="pop-db", help="full-pipeline population database under DIR")
    a = ap.parse_args(argv)
    from ibin import SearchParams, ingest, open_database, search_exhibits

    name, option = variant("planted", "--population", a.population, "pop-db")
    env = environment(f"python -m benchmarks.planted --work {a.work} --synthetic {a.synthetic}{option}"
                      + (" --reuse" if a.reuse else ""))
    src = a.work / a.population
    dst = a.work / ("planted-db" if a.population == "pop-db" else f"planted-{a.population}")
    if not src.exists():
        raise SystemExit(f"{src}: no population database (build it with python -m benchmarks.scale_build)")
    reuse = a.reuse and dst.exists()
    if not reuse:
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
    d = SHARED / "cartridge" / "fadul"
    key = fadul_key(d)
    db = open_database(dst)
    t = time.perf_counter()
    rep = ingest(db, [d / f"{n}.x3p" for n in sorted(key)])
    t_ingest = time.perf_counter() - t
    assert rep.added == 40 or (reuse and rep.added + rep.duplicates == 40), rep.summary()
    n_on_file = db.count(kind="cartridge")
    params = SearchParams()  # the defaults a user gets
    # warm-up: loads the indexes once, as a long-running service would have them
    next(iter(search_exhibits(db, ["Fadul_1-1"], params=params)))

    def one_by_one(ids):
        """One search per query, as a new exhibit is searched: no comparison is shared between lead lists.

        (``search_exhibits`` over many queries compares each pair once for both lists, as a sweep should;
        timed that way the 40 Fadul lists, which share many pairs, came out faster than a new exhibit's.)
        """
        for i in ids:
            yield from search_exhibits(db, [i], params=params)

    top1 = top10 = 0
    stages = {k: [] for k in ("candidates", "screen", "rerank", "expand", "total")}
    per_query = {}
    for ll in one_by_one(sorted(key)):
        q = ll.query_id
        mates = {n for n in key if n != q and key[n] == key[q]}
        ids = [l.id for l in ll.leads]
        top1 += bool(ids) and key.get(ids[0]) == key[q]
        top10 += mates <= set(ids[:10])
        ranks = sorted(ids.index(m) + 1 for m in mates if m in ids)
        per_query[q] = {"top": ids[0] if ids else None, "mate_ranks": ranks + [None] * (len(mates) - len(ranks))}
        for k in stages:
            stages[k].append(ll.timing_ms.get(k, float("nan")))
    # synthetic planted pairs
    recs = [r for r in db.list(kind="cartridge") if r.id.startswith("syn-")]
    rng = np.random.default_rng(2)
    pick = [recs[i] for i in rng.choice(len(recs), size=min(a.synthetic, len(recs)), replace=False)]
    syn_hits = []
    syn_stages = {k: [] for k in stages}
    for ll in one_by_one([r.id for r in pick]):
        fire = ll.query_id.rsplit("-", 1)[0]
        ids = [l.id for l in ll.leads]
        syn_hits.append(bool(ids) and ids[0].rsplit("-", 1)[0] == fire)
        for k in syn_stages:
            syn_stages[k].append(ll.timing_ms.get(k, float("nan")))
    info = db.info()
    db.close()
    base = json.loads((RESULTS / "fadul_accuracy.json").read_text()) if (RESULTS / "fadul_accuracy.json").exists() else {}
    result = {
        "what": __doc__.split("\n\n")[0],
        "environment": env,
        "population": a.population,
        "exhibits_on_file": n_on_file,
        "search_defaults": {"top": params.top, "candidates": params.candidates, "verify": params.verify,
                            "workers": params.workers},
        "fadul": {"top1_hits": top1, "top10_all_mates": top10, "queries": len(key),
                  "at_N40": {"top1_hits": base.get("top1_hits"), "top10_all_mates": base.get("top10_all_mates")},
                  "per_query": per_query},
        "synthetic": {"queries": len(syn_hits), "top1_hits": int(sum(syn_hits))},
        "lead_list_timing": "one search per query (no comparison shared between lead lists), indexes loaded",
        "lead_list_ms": {k: quantiles(v) for k, v in stages.items()},
        "lead_list_ms_synthetic": {k: quantiles(v) for k, v in syn_stages.items()},
        "ingest_40_fadul_s": t_ingest,
        "storage": info["bytes"],
    }
    write(name, result)
    print(f"Fadul in {n_on_file}: top-1 {top1}/40, all mates in top 10 {top10}/40 (N=40: {base.get('top1_hits')}/"
          f"{base.get('top10_all_mates')}); synthetic top-1 {sum(syn_hits)}/{len(syn_hits)}; lead list p50 "
          f"{np.nanmedian(stages['total']):.0f} ms")
    return result


if __name__ == "__main__":
    main()
