"""The catalog's counts a lead list asks for, at 1M exhibits: kept by triggers against counted from the rows.

Every lead list asks the catalog how many exhibits of its kind are on file
(:meth:`ibin.index.Database.count`: the lead list records it and the search
decides on worker processes by it) and, for each spectral candidate search
(the query's, then the expanded leads'), how many vectors the space holds
(to tell whether the loaded index has vectors deleted since). Until
2026-12-04 each was a ``COUNT(*)`` over the rows, linear in the database;
the padded 1M benchmark never saw it (its catalog holds 100,040 exhibits).
Since then the catalog keeps these counts in a table that triggers update in
the transaction that adds or deletes rows.

A catalog of ``--exhibits`` cartridge cases is made with ibin's schema (two
vectors each, a spectral and a polar one, of 16 bytes: the queries timed
read the ``exhibits`` rows and the ``vectors(space, id)`` index, not the
vectors), directly through SQL in one transaction (the triggers fire as for
any ingest). Then, alternating in one process, ``--repeats`` times: what a
lead list asks (one count of the kind, two counts of the spectral space)
through :meth:`Database.count` and the space's count as now, and the same
through the ``COUNT(*)`` statements as before (kept here), each inside a
snapshot as in a lead list. The answers must agree. Also timed: adding the
counts to such a catalog made without them (what opening an older catalog
for writing does, once), and an exhibit's insertion with and without the
triggers.

Run: ``python -m benchmarks.catalog_counts --work DIR [--exhibits 1000000] [--repeats 9]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import ab_times, environment, write  # noqa: E402

SPECTRAL, POLAR = "cartridge/height", "cartridge-polar/height"


def _fill(conn: sqlite3.Connection, n: int, start: int = 1) -> float:
    """``n`` exhibits with two vectors each, from rowid ``start``, in one transaction; returns its seconds."""
    blob = bytes(16)
    t = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO exhibits VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (
        (i, f"syn-{i:07d}", "cartridge", "height", f"syn-{i:07d}.x3p", f"{i:064x}", "2026-12-04T03:00:00+00:00",
         "benchmark", 1, i * 90_000, 90_000, f"{7 * i:064x}") for i in range(start, start + n)))
    conn.executemany("INSERT INTO vectors VALUES (?,?,?,?,?)", (
        ((i << 8) | part, i, space, part, blob) for i in range(start, start + n)
        for part, space in ((0, SPECTRAL), (1, POLAR))))
    conn.execute("COMMIT")
    return time.perf_counter() - t


def _before(db) -> tuple[int, int, int]:
    """What a lead list asked until 2026-12-04: the rows counted."""
    c = db._conn
    n = c.execute("SELECT COUNT(*) FROM exhibits WHERE 1 AND kind = ?", ("cartridge",)).fetchone()[0]
    v = [c.execute("SELECT COUNT(*) FROM vectors WHERE space = ?", (SPECTRAL,)).fetchone()[0] for _ in range(2)]
    return int(n), int(v[0]), int(v[1])


def _now(db) -> tuple[int, int, int]:
    return db.count(kind="cartridge"), db._count_vectors(SPECTRAL), db._count_vectors(SPECTRAL)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for the catalog (~0.4 GB at 1M)")
    ap.add_argument("--exhibits", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args(argv)
    from ibin.index import Database
    from ibin.index._database import _COUNTS_NAMES

    env = environment(f"python -m benchmarks.catalog_counts --work DIR --exhibits {a.exhibits} --repeats {a.repeats}")
    path = a.work / "catalog-counts-db"
    shutil.rmtree(path, ignore_errors=True)
    a.work.mkdir(parents=True, exist_ok=True)
    Database.create(path).close()
    conn = sqlite3.connect(path / "catalog.sqlite", isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    fill_s = _fill(conn, a.exhibits)
    print(f"{a.exhibits:,} exhibits made in {fill_s:.1f} s", flush=True)
    # one more exhibit, with the triggers and without (dropped, then the catalog as made again below)
    one_with = _fill(conn, 1, a.exhibits + 1)
    names = sorted(_COUNTS_NAMES - {"counts"})
    conn.executescript("".join(f"DROP TRIGGER {t};" for t in names) + "DROP TABLE counts;")
    one_without = _fill(conn, 1, a.exhibits + 2)
    conn.close()
    t = time.perf_counter()
    Database.open(path).close()  # adds the counts: counted once from the rows
    migrate_s = time.perf_counter() - t
    db = Database.open(path, readonly=True)
    assert db._has_counts
    times = {"now": [], "before": []}
    for r in range(a.repeats):
        for mode in (("now", "before") if r % 2 == 0 else ("before", "now")):
            with db.snapshot():
                t = time.perf_counter()
                got = (_now if mode == "now" else _before)(db)
                times[mode].append((time.perf_counter() - t) * 1e3)
            if got != (a.exhibits + 2, a.exhibits + 2, a.exhibits + 2):
                raise AssertionError(f"{mode}: {got}")
    db.close()
    shutil.rmtree(path, ignore_errors=True)
    out = ab_times(times)
    res = {
        "what": __doc__.split("\n\n")[0], "environment": env, "exhibits": a.exhibits + 2,
        "per_lead_list_ms": out,
        "catalog_made_s": fill_s, "counts_added_on_opening_s": migrate_s,
        "one_exhibit_inserted_ms": {"with_counts": one_with * 1e3, "without": one_without * 1e3},
    }
    print(f"per lead list: {out['now']['p50']:.3f} ms p50 against {out['before']['p50']:.1f} ms "
          f"({out['before_over_now_p50']:.0f}x); counts added on opening in {migrate_s:.2f} s; one exhibit inserted in "
          f"{one_with * 1e3:.2f} ms with the triggers, {one_without * 1e3:.2f} ms without", flush=True)
    print(f"wrote {write('catalog_counts', res)}")
    return res


if __name__ == "__main__":
    main()
