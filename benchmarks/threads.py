"""Native thread pools under ibin's worker threads: kept to one thread versus left at their defaults.

Unlike the other benchmarks this one does not pin the numerical libraries
to one thread: it runs as a user's process does, with OpenBLAS and OpenCV
starting one thread per core. In one process, the same work runs with
ibin's limit (:mod:`ibin._threads`, the shipped behaviour) and with the
limit switched off (the behaviour before 2026-12-03), alternating, and the
medians and their ratio are reported:

1. the first pass of the candidate stage (:func:`ibin.features._polar._first_pass`)
   over 1,000,000 coarse signatures (random values in the stored layout:
   the cost does not depend on them), in the 2 worker threads a search uses;
2. with ``--work DIR``, full lead lists of Fadul exhibits in a planted
   database (``DIR/planted-db`` or ``--db NAME``, made by
   :mod:`benchmarks.planted`), 2 workers, timed per lead list.

Run: ``python -m benchmarks.threads [--work DIR [--db planted-db] [--queries 8]] [--repeats 9]``
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np

from ._common import environment, quantiles, write


@contextlib.contextmanager
def _unlimited():
    """Switch ibin's limit off (the native libraries keep their own thread pools)."""
    import ibin._threads as th

    saved = th.native_single_thread
    th.native_single_thread = contextlib.nullcontext
    try:
        yield
    finally:
        th.native_single_thread = saved


def _alternate(fn, repeats: int, per: int = 1) -> dict:
    """Medians of ``fn`` (divided by ``per`` items) with the limit and without, alternating."""
    times = {"limited": [], "unlimited": []}
    fn()  # warm-up: compilation, caches
    for _ in range(repeats):
        for mode in ("limited", "unlimited"):
            ctx = _unlimited() if mode == "unlimited" else contextlib.nullcontext()
            with ctx:
                t = time.perf_counter()
                fn()
                times[mode].append((time.perf_counter() - t) / per)
    out = {m: quantiles(np.array(v) * 1e3) for m, v in times.items()}
    out["unlimited_over_limited_p50"] = out["unlimited"]["p50"] / out["limited"]["p50"]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--db", default="planted-db", help="planted database under DIR")
    a = ap.parse_args(argv)
    from threadpoolctl import threadpool_info

    from ibin.features._polar import COARSE_HARMONICS, CoarseSignatures, PolarParams, _first_pass

    cmd = f"python -m benchmarks.threads --repeats {a.repeats}" + (f" --work {a.work} --db {a.db} --queries {a.queries}" if a.work else "")
    env = environment(cmd)
    import cv2

    env["native_threads_at_start"] = {
        "blas": [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"],
        "opencv": cv2.getNumThreads(),
    }
    pp = PolarParams()
    rng = np.random.default_rng(0)
    n = 1_000_000
    coarse = CoarseSignatures.from_coarse(rng.standard_normal((n, 2 * pp.rings_kept * COARSE_HARMONICS), dtype=np.float32)
                                          / np.float32(np.sqrt(pp.dim)))
    q = ((rng.standard_normal((pp.rings_kept, pp.harmonics)) + 1j * rng.standard_normal((pp.rings_kept, pp.harmonics)))
         / np.sqrt(pp.dim)).astype(np.complex64)
    result = {"what": __doc__.split("\n\n")[0], "environment": env,
              "first_pass_1M_2_workers_ms": _alternate(lambda: _first_pass(q, coarse, 2), a.repeats)}
    del coarse
    if a.work:
        from ibin import SearchParams, open_database, search_exhibits

        db = open_database(a.work / a.db, readonly=True)
        ids = sorted(r.id for r in db.list(kind="cartridge") if r.id.startswith("Fadul_"))[: a.queries]
        params = SearchParams(workers=2)

        def lists():  # one search per query, as in benchmarks.planted (no comparison shared between lists)
            for i in ids:
                list(search_exhibits(db, [i], params=params))

        r = _alternate(lists, max(1, a.repeats // 3), per=len(ids))
        result["lead_list_2_workers_ms_per_list"] = {"exhibits_on_file": db.count(kind="cartridge"),
                                                     "queries": ids, **r}
        db.close()
    write("threads", result)
    fp = result["first_pass_1M_2_workers_ms"]
    print(f"first pass, 1M, 2 workers: {fp['limited']['p50']:.0f} ms limited, {fp['unlimited']['p50']:.0f} ms "
          f"unlimited ({fp['unlimited_over_limited_p50']:.2f}x)")
    if a.work:
        ll = result["lead_list_2_workers_ms_per_list"]
        print(f"lead list: {ll['limited']['p50']:.0f} ms limited, {ll['unlimited']['p50']:.0f} ms unlimited "
              f"({ll['unlimited_over_limited_p50']:.2f}x)")
    return result


if __name__ == "__main__":
    main()
