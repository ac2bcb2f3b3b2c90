"""Spectral searches at 1M exhibits after another process deleted one: vectors dropped once against filtered every time.

A process that keeps its database open (``ibin serve``, a lab pipeline)
loads an index; if another process then deletes an exhibit, the loaded index
still holds its vectors. Until 2026-12-04 every later search of the space
filtered them with the list of the space's ids read from the catalog, for
as long as the process ran; since then the search drops them from the
loaded index once (:meth:`ibin.index.Database._drop_deleted`).

On the 1M database ``padded_db`` makes (``DIR/planted-pop-db-100k-1m``), two
read-only handles load the spectral index (``IVF4096,SQ8``) and a third
deletes one of the added copies (``copy-…``; the database keeps one exhibit
fewer after each run). Then, alternating, ``--searches`` spectral searches
(the k nearest of a stored descriptor, as a lead list's candidate stage
asks) on each handle: through :meth:`Database.search_vectors` as now, and on
the other handle as before (the catalog's ids read and passed as the
selector at each search; kept here). Both must return the same neighbours.

Run: ``python -m benchmarks.deleted_elsewhere --work DIR [--db planted-pop-db-100k-1m] [--searches 9]``
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


def _before(db, q: np.ndarray, k: int):
    """A search as until 2026-12-04, with a loaded index that still holds deleted vectors."""
    idx = db.index(SPECTRAL)
    allowed = None if idx.ntotal == db._count_vectors(SPECTRAL) else db._all_vector_ids(SPECTRAL)
    D, I = idx.search(q, k, allowed=allowed)
    return D, np.where(I >= 0, I >> 8, -1)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--db", default="planted-pop-db-100k-1m")
    ap.add_argument("--searches", type=int, default=9)
    a = ap.parse_args(argv)
    from ibin.index import Database

    env = environment(f"python -m benchmarks.deleted_elsewhere --work {a.work} --db {a.db} --searches {a.searches}")
    path = planted_database(a.work, a.db)
    now, before = Database.open(path, readonly=True), Database.open(path, readonly=True)
    rng = np.random.default_rng(4)
    probe = now._conn.execute("SELECT rowid FROM exhibits WHERE id LIKE 'Fadul_%' ORDER BY rowid").fetchall()
    qs = [now.vectors_of(int(probe[int(i)][0]), SPECTRAL) for i in rng.choice(len(probe), a.searches + 1)]
    for db in (now, before):
        db.search_vectors(SPECTRAL, qs[0], 300)  # indexes loaded
    victim = now._conn.execute("SELECT id FROM exhibits WHERE id LIKE 'copy-%' ORDER BY rowid DESC LIMIT 1").fetchone()[0]
    with Database.open(path) as writer:
        writer.delete(victim, user="benchmark", reason="benchmarks.deleted_elsewhere")
    times = {"now": [], "before": []}
    for i, q in enumerate(qs[1:]):
        got = {}
        for mode in (("now", "before") if i % 2 == 0 else ("before", "now")):
            t = time.perf_counter()
            if mode == "now":
                D, R, _ = now.search_vectors(SPECTRAL, q, 300)
            else:
                D, R = _before(before, q, 300)
            times[mode].append((time.perf_counter() - t) * 1e3)
            got[mode] = R
        if not np.array_equal(got["now"], got["before"]):
            raise AssertionError("the two searches found different neighbours")
    n = now.count()
    now.close()
    before.close()
    res = {"what": __doc__.split("\n\n")[0], "environment": env, "database": a.db, "exhibits": n,
           "deleted": victim, "k": 300,
           "search_ms": ab_times(times, 2),
           "first_search_after_the_deletion_ms": {"now": times["now"][0], "before": times["before"][0]}}
    print(f"{n:,} exhibits: a search {res['search_ms']['now']['p50']:.1f} ms p50 against "
          f"{res['search_ms']['before']['p50']:.1f} ms (first after the deletion {times['now'][0]:.0f} against "
          f"{times['before'][0]:.0f} ms); the same neighbours", flush=True)
    print(f"wrote {write('deleted_elsewhere', res)}")
    return res


if __name__ == "__main__":
    main()
