"""Lead lists from a database of 1,000,000 exhibits on disk: the planted 100,040 and copies of them, catalog and index files grown.

``padded`` grows only the matrix of polar signatures in memory; what a real
1M database adds besides went unmeasured: the catalog's SQL over 1M rows, the
spectral descriptors in the IVF index the engine chooses at 1M, the index
files loaded by a fresh process (a one-off ``ibin search``). This benchmark
makes such a database once (``DIR/<db>-1m``, ~6 GB; ``--rebuild`` makes it
again) and searches it.

**How it is made.** The planted database's catalog is copied (SQLite's
backup) and its store linked, not copied. Each added exhibit (rowid after the
last) takes:

* a polar signature: a further "shot" of a randomly chosen stored signature,
  turned by a random angle, plus noise so that its expected correlation with
  the source is ``--similarity`` (0.48, the median of true mates;
  :func:`benchmarks.padded.padded_signatures`), with the source's anchor part;
* a spectral descriptor: the source exhibit's, plus noise of the same
  expected correlation, unit length;
* the feature record of *another* exhibit on file, chosen at random (records
  shared, not copied: 90 KB each would make a ~90 GB store). So a copy that
  reaches the screen is compared as a stranger would be, as most candidates
  are; ``ibin check`` would report the shared records (that is expected here).

The rows go into the catalog through SQL in transactions of 100,000 (the
catalog's triggers keep its counts), ``exhibits/last_rowid`` is raised, and
the two index files are made from the catalog's vectors as the engine would
have them: the polar signatures ``Flat``, the spectral descriptors in the
kind :func:`ibin.engine.spectral_index_factory` gives for the count (IVF with
8-bit scalar quantisation), saved as an ingest saves them.

**What is measured.** Opened read-only, the first lead list (a warm-up:
indexes loaded, kernels compiled, worker processes started) and then, in
the same process, the 40 Fadul exhibits and ``--synthetic`` planted
synthetic ones, each searched on its own with the defaults a user gets:
stage times, p50 and p95, CPU per list (this process and its workers), and
the hits. Then ``--one-off`` fresh processes each make one lead list for a
Fadul exhibit as ``ibin search DB --id X`` does (threads), timed start to
exit (as :mod:`benchmarks.one_off`).

What it leaves out: the copies are not other firearms (their signatures
resemble their sources, their surfaces are strangers'), so the hit rates say
little about 1M; the store stays the planted database's ~9 GB, in the page
cache (``cold`` measures reading records from disk).

Run: ``python -m benchmarks.padded_db --work DIR [--db planted-pop-db-100k] [--exhibits 1000000]
[--synthetic 20] [--one-off 8] [--rebuild]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import (count_hit, environment, fadul_key, family_cpu_s, new_hits, planted_database,  # noqa: E402
                      planted_queries, quantiles, write)

STAGES = ("candidates", "screen", "rerank", "expand", "total")
SPECTRAL, POLAR = "cartridge/height", "cartridge-polar/height"


def _noisy(x: np.ndarray, similarity: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors whose expected correlation with the unit rows of ``x`` is ``similarity``."""
    e = rng.standard_normal(x.shape).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    y = x + np.float32(math.sqrt(max(1.0 / similarity**2 - 1.0, 0.0))) * e
    return (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)


def build(src: Path, dst: Path, exhibits: int, similarity: float, seed: int = 0) -> dict:
    """Make ``dst`` from the planted database ``src`` grown to ``exhibits`` (see the module docstring)."""
    from ibin.engine import spectral_index_factory
    from ibin.index import Database, VectorIndex

    from .padded import padded_signatures

    t0 = time.perf_counter()
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    (dst / "index").mkdir()
    shutil.copy2(src / "ibin-db.json", dst / "ibin-db.json")
    (dst / "store").symlink_to((src / "store").resolve(), target_is_directory=True)
    with sqlite3.connect(f"file:{src / 'catalog.sqlite'}?mode=ro", uri=True) as a, \
            sqlite3.connect(dst / "catalog.sqlite") as b:
        a.backup(b)
    Database.open(dst).close()  # brings the copied catalog up to date (its kept counts)
    conn = sqlite3.connect(dst / "catalog.sqlite", isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA journal_mode=WAL")
    ex = conn.execute("SELECT rowid, kind, modality, source_name, seg, off, len, record_sha256 FROM exhibits "
                      "ORDER BY rowid").fetchall()
    rowid_of = {r[0]: i for i, r in enumerate(ex)}
    pol = conn.execute("SELECT exhibit, part, vec FROM vectors WHERE space = ? ORDER BY id", (POLAR,)).fetchall()
    spe = conn.execute("SELECT exhibit, vec FROM vectors WHERE space = ? ORDER BY id", (SPECTRAL,)).fetchall()
    p_rowids = np.array([r[0] for r in pol], np.int64)
    p_parts = np.array([r[1] for r in pol], np.int64)
    p_x = np.frombuffer(b"".join(r[2] for r in pol), np.float32).reshape(len(pol), -1)
    s_of = {r[0]: i for i, r in enumerate(spe)}
    s_x = np.frombuffer(b"".join(r[1] for r in spe), np.float32).reshape(len(spe), -1)
    n0, last = len(ex), int(ex[-1][0])
    extra = exhibits - n0
    if extra <= 0:
        raise SystemExit(f"{src} already holds {n0:,} exhibits")
    # one added polar signature per added exhibit: grown as padded grows the matrix (same seed, same draws)
    rowids, parts, x = padded_signatures(p_rowids, p_parts, p_x, len(pol) + extra, similarity=similarity, seed=seed)
    rng = np.random.default_rng(seed + 1)
    made = time.perf_counter()
    for a in range(0, extra, 100_000):
        b_ = min(extra, a + 100_000)
        new = np.arange(last + 1 + a, last + 1 + b_, dtype=np.int64)
        srcs = rowids[len(pol) + a : len(pol) + b_]  # the polar source's exhibit
        spec = _noisy(s_x[[s_of[int(s)] for s in srcs]], similarity, rng)
        strangers = rng.integers(0, n0, len(new))  # whose feature record each copy points at
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO exhibits VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (
            (int(r), f"copy-{int(r):07d}", ex[j][1], ex[j][2], ex[j][3],
             hashlib.sha256(f"padded_db copy {int(r)}".encode()).hexdigest(), "2026-12-04T00:00:00+00:00",
             "benchmark", ex[j][4], ex[j][5], ex[j][6], ex[j][7]) for r, j in zip(new, strangers)))
        conn.executemany("INSERT INTO vectors VALUES (?,?,?,?,?)", (
            ((int(r) << 8) | int(pt), int(r), POLAR, int(pt), x[len(pol) + a + i].tobytes())
            for i, (r, pt) in enumerate(zip(new, parts[len(pol) + a : len(pol) + b_]))))
        conn.executemany("INSERT INTO vectors VALUES (?,?,?,?,?)", (
            (int(r) << 8, int(r), SPECTRAL, 0, spec[i].tobytes()) for i, r in enumerate(new)))
        conn.execute("INSERT OR REPLACE INTO settings VALUES ('exhibits/last_rowid', ?)", (str(int(new[-1])),))
        conn.execute("COMMIT")
        print(f"  {b_:,} of {extra:,} exhibits added", flush=True)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    catalog_id = conn.execute("SELECT value FROM settings WHERE key = 'catalog_id'").fetchone()[0]
    conn.close()
    rows_s = time.perf_counter() - made
    del rowid_of
    # the index files, as the engine keeps them
    t = time.perf_counter()
    with Database.open(dst, readonly=True) as db:
        idx_files = {}
        for space, factory in ((POLAR, "Flat"), (SPECTRAL, spectral_index_factory(db._count_vectors(SPECTRAL)))):
            got = db._conn.execute("SELECT id, vec FROM vectors WHERE space = ? ORDER BY id", (space,)).fetchall()
            ids = np.array([r[0] for r in got], np.int64)
            vecs = np.frombuffer(b"".join(r[1] for r in got), np.float32).reshape(len(got), -1)
            del got
            vi = VectorIndex(vecs.shape[1], factory)
            vi.add(ids, vecs)
            vi.save(db.index_path(space), catalog_id=catalog_id)
            idx_files[space] = {"factory": factory, "vectors": int(vi.ntotal), "bytes": db.index_path(space).stat().st_size}
            del vi, vecs, ids
    index_s = time.perf_counter() - t
    with Database.open(dst) as db:  # as any process opens it: the files are used as they are
        n = db.count(kind="cartridge")
        assert n == exhibits, n
        for space in (POLAR, SPECTRAL):
            assert db.index(space).file_version == 2, space
    return {"exhibits": exhibits, "added": extra, "similarity": similarity, "rows_added_s": rows_s,
            "index_files_s": index_s, "index_files": idx_files, "made_in_s": time.perf_counter() - t0,
            "catalog_bytes": (dst / "catalog.sqlite").stat().st_size}


def warm(path: Path, synthetic: int) -> dict:
    """Lead lists in one process: a warm-up, then every Fadul query and ``synthetic`` planted synthetic ones."""
    from ibin import SearchParams, _workers, open_database, search_exhibits

    key = fadul_key()
    db = open_database(path, readonly=True)
    from types import SimpleNamespace

    recs = [SimpleNamespace(id=r[0]) for r in db._conn.execute(  # the planted exhibits (listing all 1M: ~1 min)
        "SELECT id FROM exhibits WHERE id NOT LIKE 'copy-%' ORDER BY rowid")]
    fadul, syn = planted_queries(recs, len(key), synthetic, seed=2)
    params = SearchParams()
    t = time.perf_counter()
    next(iter(search_exhibits(db, [fadul[0]], params=params)))
    first_s = time.perf_counter() - t
    times = {q: {s: [] for s in (*STAGES, "cpu")} for q in ("fadul", "synthetic")}
    hits = new_hits()
    copies_in_top10 = 0
    for q in fadul + syn:
        kind = "fadul" if q in key else "synthetic"
        cpu = family_cpu_s()
        ll = next(iter(search_exhibits(db, [q], params=params)))
        times[kind]["cpu"].append((family_cpu_s() - cpu) * 1e3)
        for s in STAGES:
            times[kind][s].append(ll.timing_ms[s])
        ids = [ld.id for ld in ll.leads]
        count_hit(hits, q, ids, key)
        copies_in_top10 += sum(i.startswith("copy-") for i in ids[:10])
    _workers.shutdown()
    db.close()
    return {"first_lead_list_s": first_s, "queries": {"fadul": len(fadul), "synthetic": len(syn)},
            "ms": {k: {s: quantiles(np.array(v)) for s, v in by.items() if v} for k, by in times.items()},
            "hits": hits, "copies_in_top_10": copies_in_top10}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--db", default="planted-pop-db-100k", help="planted database under DIR to grow")
    ap.add_argument("--exhibits", type=int, default=1_000_000)
    ap.add_argument("--similarity", type=float, default=0.48)
    ap.add_argument("--synthetic", type=int, default=20)
    ap.add_argument("--one-off", type=int, default=8, help="fresh processes, one lead list each")
    ap.add_argument("--rebuild", action="store_true")
    a = ap.parse_args(argv)
    from .one_off import _one

    env = environment(f"python -m benchmarks.padded_db --work {a.work} --db {a.db} --exhibits {a.exhibits} "
                      f"--similarity {a.similarity} --synthetic {a.synthetic} --one-off {a.one_off}"
                      + (" --rebuild" if a.rebuild else ""))
    src = planted_database(a.work, a.db)
    dst = a.work / f"{a.db}-{a.exhibits // 1_000_000}m" if a.exhibits % 1_000_000 == 0 else a.work / f"{a.db}-{a.exhibits}"
    made = None
    if a.rebuild or not (dst / "ibin-db.json").exists():
        made = build(src, dst, a.exhibits, a.similarity)
        print(f"made {dst} in {made['made_in_s']:.0f} s", flush=True)
    res = {"what": __doc__.split("\n\n")[0], "environment": env, "database": dst.name, "made": made}
    res["warm"] = warm(dst, a.synthetic)
    w = res["warm"]["ms"]
    print(f"warm: Fadul {w['fadul']['total']['p50'] / 1e3:.2f} s p50 (candidates {w['fadul']['candidates']['p50']:.0f} ms), "
          f"synthetic {w['synthetic']['total']['p50'] / 1e3:.2f} s; hits {res['warm']['hits']}", flush=True)
    key = sorted(fadul_key())
    runs = [_one(dst, key[(5 * i) % len(key)], "threads") for i in range(a.one_off)]
    res["one_off"] = {"wall_s": quantiles(np.array([r["wall_s"] for r in runs])),
                      "cpu_s": quantiles(np.array([r["cpu_s"] for r in runs])),
                      "stages_ms_p50": {s: float(np.median([r["timing_ms"][s] for r in runs])) for s in STAGES},
                      "wall_s_all": [round(r["wall_s"], 2) for r in runs]}
    print(f"one-off: {res['one_off']['wall_s']['p50']:.2f} s p50 start to exit ({a.one_off} processes)", flush=True)
    print(f"wrote {write('padded_db', res)}")
    return res


if __name__ == "__main__":
    main()
