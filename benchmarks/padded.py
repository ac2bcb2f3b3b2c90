"""Full lead lists against a million polar signatures: the planted database with its signature matrix padded.

The lead list at N = 1M cannot be made end to end here: 1M exhibits through
the real pipeline would take ~90 GB of store and days of ingest. What grows
with N in a lead list is the candidate stage, the linear scan of the polar
signatures (the query's, then one per expanded lead); the screen and the
full comparisons handle a fixed number of candidates. So this benchmark
searches the planted database (``DIR/planted-pop-db-100k``, 100,040 exhibits
made by the real pipeline) twice per query, alternating in one process:

* **as it is** (baseline);
* **padded**: the matrix of polar signatures the candidate stage scans is
  grown to ``--rows`` (default 1,000,000) signatures. Each added signature
  is a further "shot" of a randomly chosen stored signature, attributed to
  the same exhibit and anchor: turned by a random angle, plus complex
  Gaussian noise so that its expected correlation with the source is
  ``--similarity`` (default 0.48, the median exact score of true mates in
  ``polar_index.json``). Every scan, first and second pass, reads all of
  them, and the ~300 candidates handed on are real exhibits with their
  stored surfaces, screened and compared in full as in any search.

Reported per stage: medians and p95 of both, their ratio, and the CPU time of
each lead list (this process and its worker processes, from ``/proc``), which
bounds the wall time on two cores whatever the machine's load.

Left unmeasured: the spectral descriptors (100,040 in their IVF index;
``scale.json`` times the candidate stage with 1M of them), the catalog's
SQL at 1M rows (its counts, the part that grew with N, are timed at 1M by
``catalog_counts``), and reading the surfaces of a ~90 GB store that would
not stay in the page cache (a lead list reads ~450 records, ~40 MB). The hit
rates are reported but say little about 1M: the added signatures are
copies of the exhibits on file, not other firearms.

Run: ``python -m benchmarks.padded --work DIR [--db planted-pop-db-100k] [--rows 1000000] [--synthetic 20]``
(the database is made by ``python -m benchmarks.planted --population pop-db-100k``).
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import count_hit, environment, fadul_key, family_cpu_s, new_hits, planted_database, planted_queries, quantiles, variant, write  # noqa: E402

STAGES = ("candidates", "screen", "rerank", "expand", "total")


def padded_signatures(rowids: np.ndarray, parts: np.ndarray, x: np.ndarray, rows: int, *, similarity: float,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rowids, parts, vectors)`` grown to ``rows`` signatures by noisy, turned copies of random stored ones."""
    from ibin.features._polar import PolarParams, from_vector, to_vector

    R = PolarParams().rings_kept
    n = len(x)
    extra = max(0, rows - n)
    rng = np.random.default_rng(seed)
    src = rng.integers(0, n, extra)
    out = np.empty((n + extra, x.shape[1]), np.float32)
    out[:n] = x
    s2 = max(1.0 / similarity**2 - 1.0, 0.0)
    for a in range(0, extra, 1 << 15):
        s = src[a : a + (1 << 15)]
        C = from_vector(x[s], R)  # (b, R, M), unit energy
        m = np.arange(1, C.shape[-1] + 1)
        C = C * np.exp(-1j * np.outer(rng.uniform(0, 2 * np.pi, len(s)), m))[:, None, :]
        e = (rng.standard_normal(C.shape) + 1j * rng.standard_normal(C.shape)) / math.sqrt(2 * C[0].size)
        C = C + math.sqrt(s2) * e
        C /= np.linalg.norm(C.reshape(len(s), -1), axis=1)[:, None, None]
        out[n + a : n + a + len(s)] = to_vector(C.astype(np.complex64))
    return np.concatenate([rowids, rowids[src]]), np.concatenate([parts, parts[src]]), out


def pad_handle(db, rows: int, *, similarity: float) -> dict:
    """Make this handle's candidate stage scan its polar signatures padded to ``rows`` (:func:`padded_signatures`).

    Returns the signature counts before and after, and the seconds the padding took.
    """
    space = next(s for s in db.spaces() if "-polar/" in s)
    rowids, parts, x = db.space_matrix(space)
    t = time.perf_counter()
    grown = padded_signatures(rowids, parts, x, rows, similarity=similarity)
    made_s = time.perf_counter() - t
    own = db.space_matrix
    db.space_matrix = lambda s: grown if s == space else own(s)
    return {"as_is": int(len(x)), "padded": int(len(grown[2])), "made_in_s": made_s}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--db", default="planted-pop-db-100k", help="planted database under DIR")
    ap.add_argument("--rows", type=int, default=1_000_000, help="polar signatures after padding")
    ap.add_argument("--similarity", type=float, default=0.48, help="expected correlation of an added copy with its source")
    ap.add_argument("--synthetic", type=int, default=20, help="synthetic queries (their mate is on file)")
    a = ap.parse_args(argv)
    from ibin import SearchParams, _workers, open_database, search_exhibits

    name, option = variant("padded", "--db", a.db, "planted-pop-db-100k")
    env = environment(f"python -m benchmarks.padded --work {a.work} --rows {a.rows} --similarity {a.similarity} "
                      f"--synthetic {a.synthetic}{option}")
    path = planted_database(a.work, a.db)
    key = fadul_key()
    base = open_database(path, readonly=True)
    pad = open_database(path, readonly=True)
    counts = pad_handle(pad, a.rows, similarity=a.similarity)  # this handle's candidate stage scans the padded matrix

    recs = base.list(kind="cartridge")
    fadul, syn = planted_queries(recs, len(key), a.synthetic, seed=2)
    params = SearchParams()  # the defaults a user gets
    dbs = {"as_is": base, "padded": pad}
    for db in dbs.values():  # warm-up: indexes and derived arrays loaded, worker pool started, kernels compiled
        next(iter(search_exhibits(db, [fadul[0]], params=params)))
    times = {m: {q: {s: [] for s in (*STAGES, "cpu")} for q in ("fadul", "synthetic")} for m in dbs}
    hits = {m: new_hits() for m in dbs}
    for i, q in enumerate(fadul + syn):
        kind = "fadul" if q in key else "synthetic"
        for m in (("as_is", "padded") if i % 2 == 0 else ("padded", "as_is")):  # alternate which goes first
            cpu = family_cpu_s()
            ll = next(iter(search_exhibits(dbs[m], [q], params=params)))
            times[m][kind]["cpu"].append((family_cpu_s() - cpu) * 1e3)  # ms of CPU, this process and its workers
            for s in STAGES:
                times[m][kind][s].append(ll.timing_ms[s])
            ids = [ld.id for ld in ll.leads]
            count_hit(hits[m], q, ids, key)
    _workers.shutdown()
    out = {m: {k: {s: quantiles(np.array(v)) for s, v in by.items() if v} for k, by in t_.items()} for m, t_ in times.items()}
    ratio = {k: {s: out["padded"][k][s]["p50"] / out["as_is"][k][s]["p50"] for s in (*STAGES, "cpu")}
             for k in out["padded"] if out["padded"][k]}
    result = {
        "what": __doc__.split("\n\n")[0], "environment": env, "database": a.db,
        "exhibits_on_file": base.count(kind="cartridge"),
        "polar_signatures": {"as_is": counts["as_is"], "padded": counts["padded"]},
        "padding": {"similarity_to_source": a.similarity, "made_in_s": counts["made_in_s"],
                    "how": "turned, noisy copies of random stored signatures, attributed to the same exhibit and anchor"},
        "search_defaults": {"top": params.top, "candidates": params.candidates, "verify": params.verify,
                            "workers": params.workers},
        "queries": {"fadul": len(fadul), "synthetic": len(syn)},
        "lead_list_ms": out, "cpu": "ms of CPU per lead list, this process and its worker processes (/proc)",
        "padded_over_as_is_p50": ratio, "hits": hits,
    }
    base.close()
    pad.close()
    write(name, result)
    for k in ratio:
        for m in dbs:
            print(f"{k:9s} {m:7s} " + "  ".join(f"{s} {v['p50']:.0f}" for s, v in out[m][k].items()) + " ms (p50)")
        print(f"{k:9s} padded / as is: " + "  ".join(f"{s} {v:.2f}x" for s, v in ratio[k].items()))
    print(f"hits: {hits}")
    return result


if __name__ == "__main__":
    main()
