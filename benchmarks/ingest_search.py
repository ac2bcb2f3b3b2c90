"""Ingest, then search: a search right after an ingest, in a process that keeps its database open.

The candidate stage reads each anchor's polar signatures in a form derived
from the space's signature matrix (:class:`ibin._polar_rows.PolarRows`: the
rows of each anchor, their first harmonics in 8 bits, rowids sorted). Until
2026-12-03 any change to the matrix, one ingest included, derived all of it
again at the next search. Now the rows an ingest adds are derived alone. A
lab pipeline that enters each new exhibit and searches it at once (the
workflow of NIBIN-like networks) paid the whole derivation on every lead list.

Measured here, in one process, both ways alternating (the previous way
emulated by dropping the derived arrays after each ingest, which is what
the previous code's key did):

1. **Derivation alone**, at the planted database's real matrix (100,080
   signatures) and at that matrix padded to ``--rows`` (default 1,000,000;
   :func:`benchmarks.padded.padded_signatures`): deriving everything against
   extending by one added signature; median of ``--repeat``.
2. **Ingest then search, end to end**, on a copy of the planted database
   (``DIR/planted-pop-db-100k``, 100,040 exhibits made by the real pipeline):
   ``--queries`` new synthetic shots of firearms on file are ingested through
   :func:`ibin.ingest` and searched at once (:func:`ibin.search_exhibits`,
   default parameters); per lead list: the candidate stage and the total, and
   whether a mate (an earlier shot of the same firearm) comes first.

The copy is made under ``DIR`` (``ingest-search-db``, about 9 GB) and removed
at the end. Left unmeasured: an end-to-end search after an ingest at 1M (no
1M database with a catalog; part 1 gives what the derivation costs there).

Run: ``python -m benchmarks.ingest_search --work DIR [--queries 10] [--rows 1000000]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import environment, planted_database, quantiles, write  # noqa: E402

SPACE = "cartridge-polar/height"
KEY = ("polar-rows", SPACE)
WORKERS = 2  # a search's default (SearchParams.workers): the threads that derive the rows


def _derivation(rowids: np.ndarray, parts: np.ndarray, x: np.ndarray, repeat: int) -> dict:
    """Milliseconds to derive all rows, and to extend a derivation by one added row (alternating)."""
    from ibin._polar_rows import PolarRows

    n = len(rowids) - 1  # the last row plays the added one
    full, extend = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        rows = PolarRows(rowids[:n], parts[:n], x[:n], workers=WORKERS)
        full.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        assert rows.update(rowids, parts, x, workers=WORKERS)
        extend.append((time.perf_counter() - t) * 1e3)
        del rows
    f, e = quantiles(full), quantiles(extend)
    return {"signatures": int(len(rowids)), "derive_all_ms": f, "extend_by_one_ms": e,
            "ratio_p50": f["p50"] / e["p50"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--db", default="planted-pop-db-100k")
    ap.add_argument("--queries", type=int, default=10, help="new exhibits per mode")
    ap.add_argument("--rows", type=int, default=1_000_000, help="signatures of the padded matrix (part 1)")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)
    command = f"python -m benchmarks.ingest_search --work {a.work} --queries {a.queries} --rows {a.rows}"
    if a.db != "planted-pop-db-100k":
        command += f" --db {a.db}"
    env = environment(command)

    from ibin import _workers, ingest, open_database, search_exhibits
    from ibin.engine import SearchParams
    from ibin.synth import cartridge_case

    from .padded import padded_signatures
    from .population import metadata_for

    src = planted_database(a.work, a.db)
    copy = a.work / "ingest-search-db"
    if copy.exists():
        shutil.rmtree(copy)
    t = time.perf_counter()
    shutil.copytree(src, copy)
    copy_s = time.perf_counter() - t
    try:
        db = open_database(copy)
        # 1. derivation alone
        rowids, parts, x = db.space_matrix(SPACE)
        derivation = [_derivation(rowids, parts, x, a.repeat)]
        grown = padded_signatures(rowids, parts, x, a.rows, similarity=0.48)
        # the padded rows first, the real ones last: the row added is a real exhibit's (a new rowid)
        order = np.r_[np.arange(len(rowids), len(grown[0])), np.arange(len(rowids))]
        derivation.append(_derivation(grown[0][order], grown[1][order], grown[2][order], a.repeat))
        del grown, order

        # 2. ingest then search, end to end
        firearms = sorted({r.metadata["firearm"] for r in db.list(kind="cartridge") if r.id.startswith("syn-")})
        pick = np.random.default_rng(11).choice(len(firearms), size=2 * a.queries, replace=False)
        params = SearchParams()
        next(iter(search_exhibits(db, [db.list(kind="cartridge")[0].id], params=params)))  # workers started, kernels loaded
        modes = ("extended", "derived_again")
        times = {m: {"candidates": [], "total": [], "ingest": []} for m in modes}
        hits = {m: 0 for m in modes}
        for i, j in enumerate(pick):
            mode = modes[i % 2]
            firearm = int(firearms[j].removeprefix("syn-"))
            scan, _ = cartridge_case(firearm, 2, pixel_um=12.5, difficulty=0.5)  # shots 0 and 1 are on file
            new_id = f"syn-{firearm}-2"
            t = time.perf_counter()
            report = ingest(db, [scan], ids=[new_id], metadata=metadata_for(firearm, 2) | {"firearm": f"syn-{firearm}"})
            times[mode]["ingest"].append((time.perf_counter() - t) * 1e3)
            if report.failed or not report.added:
                raise SystemExit(f"{new_id}: not ingested ({report.summary()})")
            if mode == "derived_again":
                db.derived.pop(KEY, None)  # what the previous code did after any change to the matrix
            ll = next(iter(search_exhibits(db, [new_id], params=params)))
            for s in ("candidates", "total"):
                times[mode][s].append(ll.timing_ms[s])
            hits[mode] += bool(ll.leads) and ll.leads[0].id.rsplit("-", 1)[0] == f"syn-{firearm}"
        _workers.shutdown()
        db.close()
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    out = {m: {s: quantiles(v) for s, v in by.items()} for m, by in times.items()}
    result = {
        "what": __doc__.split("\n\n")[0], "environment": env, "database": a.db,
        "copy_made_in_s": copy_s,
        "derivation": derivation,
        "end_to_end": {"queries_per_mode": a.queries, "lead_list_ms": out, "mate_first": hits,
                       "candidates_ms_in_order": {m: times[m]["candidates"] for m in modes},
                       "derived_again_over_extended_p50": {s: out["derived_again"][s]["p50"] / out["extended"][s]["p50"]
                                                           for s in ("candidates", "total")}},
    }
    write("ingest_search", result)
    for d in derivation:
        print(f"{d['signatures']:>9,} signatures: derive all {d['derive_all_ms']['p50']:.0f} ms, "
              f"extend by one {d['extend_by_one_ms']['p50']:.1f} ms")
    for m in modes:
        print(f"{m:14s} candidates {out[m]['candidates']['p50']:.0f} ms, total {out[m]['total']['p50']:.0f} ms (p50), "
              f"mate first {hits[m]}/{a.queries}")
    return result


if __name__ == "__main__":
    main()
