"""Filtered spectral searches at 1M exhibits: the allowed exhibits as a bitmap selector against the list of their vector ids.

A search with metadata filters (``ibin search --filter caliber=9mm``) runs
inside FAISS with an ID selector, so that it still returns its k
candidates. Until 2026-12-04 the selector was the list of the space's
vector ids that belong to the allowed exhibits, found by reading every id
of the space from the catalog and matching them against every possible id
of the allowed exhibits (256 parts each); since then it is a bitmap with the
allowed exhibits' bits set (:meth:`ibin.index.VectorIndex.search`,
``allowed_groups``), made from the exhibits alone.

On the 1M database ``padded_db`` makes (``DIR/planted-pop-db-100k-1m``; its
planted exhibits carry caliber and agency metadata, its added copies none),
for each of ``--filters`` metadata values, a search of the 300 nearest
spectral descriptors of a Fadul exhibit's, alternating: as now
(:meth:`Database.search_vectors` with the allowed rowids) and as before
(kept here). Both must return the same neighbours.

Run: ``python -m benchmarks.filtered_search --work DIR [--db planted-pop-db-100k-1m] [--repeats 3]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import ab_times, environment, planted_database, write  # noqa: E402

SPECTRAL = "cartridge/height"


def _before(db, q: np.ndarray, k: int, allowed_rowids: np.ndarray) -> np.ndarray:
    """The filtered search as until 2026-12-04: the allowed exhibits' vector ids found among all the space's."""
    r = np.asarray(allowed_rowids, dtype=np.int64)
    allowed = ((r[:, None] << 8) + np.arange(1 << 8)[None]).ravel()
    live = db._all_vector_ids(SPECTRAL)
    _, I = db.index(SPECTRAL).search(q, k, allowed=live[np.isin(live, allowed)])
    return np.where(I >= 0, I >> 8, -1)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--db", default="planted-pop-db-100k-1m")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    from ibin.index import Database

    env = environment(f"python -m benchmarks.filtered_search --work {a.work} --db {a.db} --repeats {a.repeats}")
    db = Database.open(planted_database(a.work, a.db), readonly=True)
    filters = [(k, v) for k, v, _ in db._conn.execute(
        "SELECT key, value, COUNT(*) AS n FROM metadata WHERE key IN ('caliber', 'agency') GROUP BY key, value "
        "ORDER BY n DESC LIMIT 6")]
    q = db.vectors_of(db.get("Fadul_1-1").rowid, SPECTRAL)
    db.search_vectors(SPECTRAL, q, 300)  # the index loaded
    rows = []
    times = {"now": [], "before": []}
    for r in range(a.repeats):
        for key, value in filters:
            allowed = db.rowids(kind="cartridge", filters={key: value})
            got = {}
            for mode in (("now", "before") if r % 2 == 0 else ("before", "now")):
                t = time.perf_counter()
                if mode == "now":
                    got[mode] = db.search_vectors(SPECTRAL, q, 300, allowed_rowids=allowed)[1]
                else:
                    got[mode] = _before(db, q, 300, allowed)
                times[mode].append((time.perf_counter() - t) * 1e3)
            if not np.array_equal(got["now"], got["before"]) or not np.isin(got["now"][got["now"] >= 0], allowed).all():
                raise AssertionError(f"{key}={value}: the searches differ")
            if r == 0:
                rows.append({"filter": f"{key}={value}", "allowed_exhibits": int(len(allowed))})
    n = db.count()
    db.close()
    res = {"what": __doc__.split("\n\n")[0], "environment": env, "database": a.db, "exhibits": n, "k": 300,
           "filters": rows,
           "search_ms": ab_times(times, 2)}
    print(f"{n:,} exhibits, {len(rows)} filters ({min(r['allowed_exhibits'] for r in rows):,}-"
          f"{max(r['allowed_exhibits'] for r in rows):,} exhibits allowed): {res['search_ms']['now']['p50']:.1f} ms p50 "
          f"against {res['search_ms']['before']['p50']:.0f} ms; the same neighbours", flush=True)
    print(f"wrote {write('filtered_search', res)}")
    return res


if __name__ == "__main__":
    main()
