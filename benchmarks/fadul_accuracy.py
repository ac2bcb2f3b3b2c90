"""Accuracy on the Fadul set: 40 real breech-face scans, 780 pairs, known firearms.

Runs the real pipeline end to end: every scan is ingested into a fresh
database, then every exhibit's lead list is computed against all the others
(``ibin search DB --all``). Reports top-1 and top-10 hit rates, ROC AUC and
equal error rate of the pair scores (score, CMC count, CCF), the CMC
separation, and the open peer's numbers on the same pairs
(``scratch-core-pair-scores.csv``, NFI scratch-core ``compare_surfaces``).

Run: ``python -m benchmarks.fadul_accuracy [--shared PATH]``
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np

from ._common import SHARED, auc, environment, eer, fadul_key, write


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    args = ap.parse_args(argv)
    from ibin import SearchParams, ingest, open_database, search_exhibits

    d = args.shared / "cartridge" / "fadul"
    key = fadul_key(d)
    env = environment("python -m benchmarks.fadul_accuracy")
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp) / "db", create=True)
        t0 = time.perf_counter()
        rep = ingest(db, [d / f"{n}.x3p" for n in sorted(key)])
        t_ingest = time.perf_counter() - t0
        assert rep.added == len(key), rep.summary()
        lists = []
        t0 = time.perf_counter()
        for ll in search_exhibits(db, params=SearchParams(top=len(key) - 1, candidates=len(key))):
            lists.append(ll)
        t_search = time.perf_counter() - t0
        info = db.info()
        db.close()
    result = {
        "what": "Fadul et al. 2011, 40 breech faces (CSAFE processed), all pairs, through ingest + search --all",
        "environment": env,
        **accuracy(lists, key),
        "seconds": {"ingest_40": t_ingest, "search_all": t_search, "per_pair": t_search / (len(key) * (len(key) - 1) / 2)},
        "storage_bytes_per_exhibit": info["bytes"]["per_exhibit"],
    }
    peer = d / "scratch-core-pair-scores.csv"
    if peer.exists():
        with open(peer) as f:
            rows = list(csv.DictReader(f))
        ps = [r for r in rows if r["same_firearm"] == "1"]
        pd = [r for r in rows if r["same_firearm"] == "0"]
        result["scratch_core"] = {
            "auc_cmc": auc([float(r["cmc"]) for r in ps], [float(r["cmc"]) for r in pd]),
            "auc_mean_cell_ccf": auc([float(r["mean_cell_accf"]) for r in ps], [float(r["mean_cell_accf"]) for r in pd]),
            "cmc_same_min": min(int(r["cmc"]) for r in ps), "cmc_different_max": max(int(r["cmc"]) for r in pd),
            "cpu_seconds_per_pair_median": float(np.median([float(r["cpu_s"]) for r in rows])),
        }
    out = write("fadul_accuracy", result)
    print(f"{summary(result)}; {result['seconds']['per_pair'] * 1e3:.0f} ms/pair -> {out}")
    return result


def accuracy(lists, key: dict[str, str]) -> dict:
    """Hit rates, ROC AUC, EER and CMC separation of all-against-all lead lists with known firearms.

    ``lists`` holds one lead list per exhibit, each listing all the others.
    """
    pair = {}
    top1, top10, per_query = 0, 0, {}
    for ll in lists:
        q = ll.query_id
        mates = {n for n in key if n != q and key[n] == key[q]}
        ids = [l.id for l in ll.leads]
        top1 += key[ids[0]] == key[q]
        top10 += mates <= set(ids[:10])
        per_query[q] = {"top": ids[0], "top_same_firearm": key[ids[0]] == key[q],
                        "mate_ranks": sorted(ids.index(m) + 1 for m in mates)}
        for l in ll.leads:
            pair[tuple(sorted((q, l.id)))] = (l.score, l.cmc, l.ccf)
    same = [v for k, v in pair.items() if key[k[0]] == key[k[1]]]
    diff = [v for k, v in pair.items() if key[k[0]] != key[k[1]]]
    col = lambda rows, i: [r[i] for r in rows]  # noqa: E731
    return {
        "n_scans": len(key), "n_pairs": len(pair), "same_pairs": len(same), "different_pairs": len(diff),
        "top1_hits": top1, "top10_all_mates": top10,
        "auc": {"score": auc(col(same, 0), col(diff, 0)), "cmc": auc(col(same, 1), col(diff, 1)),
                "ccf": auc(col(same, 2), col(diff, 2))},
        "eer": {"score": eer(col(same, 0), col(diff, 0)), "cmc": eer(col(same, 1), col(diff, 1))},
        "cmc_same": {"min": min(col(same, 1)), "median": float(np.median(col(same, 1)))},
        "cmc_different": {"max": max(col(diff, 1)), "median": float(np.median(col(diff, 1)))},
        "different_pairs_cmc_6_or_more": sum(c >= 6 for c in col(diff, 1)),
        "score_gap": min(col(same, 0)) - max(col(diff, 0)),
        "per_query": per_query,
    }


def summary(r: dict) -> str:
    """One line of :func:`accuracy`'s result."""
    n = r["n_scans"]
    return (f"top-1 {r['top1_hits']}/{n}, all mates in top 10 for {r['top10_all_mates']}/{n}; AUC score "
            f"{r['auc']['score']:.4f}, CMC {r['auc']['cmc']:.4f}; CMC same >= {r['cmc_same']['min']}, different <= "
            f"{r['cmc_different']['max']} ({r['different_pairs_cmc_6_or_more']} different pairs at >= 6)")


if __name__ == "__main__":
    main()
