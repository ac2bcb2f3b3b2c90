"""Indexes for the polar signatures, measured: why the candidate stage reads every stored signature.

A cartridge case's rotation is unknown, so the candidate stage scores each
stored polar signature at its best rotation (:func:`ibin.features.rotation_max`);
ibin does it in two passes over all signatures (``rotation_max_top``), a cost
linear in the database. The sub-linear indexes of FAISS answer the inner
product with one fixed query vector, so with them the query is rotated to
``A`` angles, each rotated query is searched, and the union of the answers is
scored exactly; a rotation-invariant descriptor could instead prune the scan
to a fraction of the database. On a planted database (the 40 Fadul cartridge
cases, 126 mate pairs, and synthetic firearms of two cases each, among
~100,000 exhibits made by the real pipeline) this measures, for each method:

- the true mates among its best ``k`` exhibits (``k`` = the engine's polar
  candidates, 300), i.e. those handed on to the re-rank;
- the share of the exact search's best ``k`` it finds;
- its time per query in one thread, with the exact search and ibin's
  two-pass search run in the same process as baselines.

Methods: an HNSW graph (``M`` 32, ``efConstruction`` 64; FAISS's usual
settings) searched with ``A`` = 64 or 128 rotations at ``efSearch`` 64 or
128, 50 neighbours per rotation; an IVF-Flat index (``4 sqrt(n)`` lists, a
sixteenth probed: the rules of the spectral index) with 64 rotations; and the
exact rotation maximum restricted to the best 5 % by a rotation-invariant
descriptor: the spectral descriptor (searched in its FAISS index as the engine
does), the ring power ``|C|^2`` of the polar signature itself, the cross-ring
power ``sum_m |P_m|^2`` of the per-harmonic products ``P_m = sum_k q_km
conj(d_km)`` (rotation-invariant and still an inner product with a fixed query:
of the ring-by-ring matrices ``d_m d_m^H``, 2,048 values a signature, so an
index could hold it), or their bispectrum ``sum Re P_m1 P_m2 conj(P_m1+m2)``
(third order: it keeps how the harmonics' phases agree, which the exact
rotation maximum rewards; no index of manageable size answers it, so it is an
upper bound on what such invariants could do).

Run: ``python -m benchmarks.polar_index --work DIR [--db planted-pop-db-100k] [--synthetic 60]``
(the database is made by ``python -m benchmarks.planted --population pop-db-100k``).
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import environment, fadul_key, planted_database, quantiles, variant, write  # noqa: E402

#: Polar candidates the engine hands on (``SearchParams().candidates``).
K = 300
#: Neighbours asked per rotated query.
PER_ROTATION = 50
#: Share of the database kept by a rotation-invariant pre-filter.
PREFILTER_SHARE = 0.05
#: Harmonics of the rotation invariants built from the per-harmonic products (those of the first pass).
INVARIANT_HARMONICS = 24


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--db", default="planted-pop-db-100k", help="planted database under DIR")
    ap.add_argument("--synthetic", type=int, default=60, help="synthetic queries (their mate is on file)")
    a = ap.parse_args(argv)
    import faiss

    from ibin import open_database
    from ibin.engine import _polar_by_anchor
    from ibin.features._kernels_nb import signature_products
    from ibin.features._polar import PolarParams, from_vector, rotate_signature, rotation_max, rotation_max_top, to_vector

    name, option = variant("polar_index", "--db", a.db, "planted-pop-db-100k")
    env = environment(f"python -m benchmarks.polar_index --work {a.work} --synthetic {a.synthetic}{option}")
    path = planted_database(a.work, a.db)
    faiss.omp_set_num_threads(1)
    db = open_database(path, readonly=True)
    key = fadul_key()
    spaces = db.spaces()
    pol = next(s for s in spaces if "-polar/" in s)
    spec = next(s for s in spaces if s.startswith("cartridge/"))
    rowids, x, by_anchor = _polar_by_anchor(db, pol)
    _, parts, _ = db.space_matrix(pol)
    recs = {r.id: r for r in db.list(kind="cartridge")}
    rid = {i: r.rowid for i, r in recs.items()}
    n_exhibits = len(recs)
    pos_in = {part: dict(zip(rowids[sel].tolist(), range(len(sel)))) for part, (sel, *_r) in by_anchor.items()}
    R = PolarParams().rings_kept
    power = np.abs(from_vector(x, R)) ** 2
    power = power.reshape(len(x), -1)
    power /= np.maximum(np.linalg.norm(power, axis=1, keepdims=True), 1e-12)

    # indexes, one per anchor (only like anchors are compared)
    build = {}
    hnsw, ivf = {}, {}
    t = time.perf_counter()
    for part, (sel, *_rest) in by_anchor.items():
        g = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        g.hnsw.efConstruction = 64
        g.add(np.ascontiguousarray(x[sel]))
        hnsw[part] = g
    build["hnsw_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for part, (sel, *_rest) in by_anchor.items():
        nlist = max(1, min(len(sel) // 39, 1 << int(round(np.log2(4 * np.sqrt(len(sel)))))))
        quant = faiss.IndexFlatIP(x.shape[1])
        iv = faiss.IndexIVFFlat(quant, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        iv.train(np.ascontiguousarray(x[sel]))
        iv.add(np.ascontiguousarray(x[sel]))
        iv.nprobe = max(1, nlist // 16)
        ivf[part] = iv
    build["ivf_s"] = time.perf_counter() - t

    def rotated(C, A):
        return np.stack([to_vector(rotate_signature(C, 360.0 * i / A)) for i in range(A)])

    def exact_rows(C, rows):
        s, _ = rotation_max(C, x, rows=rows)
        return rows, s

    def two_pass(C, part, sel):
        idx, s = rotation_max_top(C, x, K, coarse=by_anchor[part][1], rows=sel)
        return sel[idx], s

    def graph(index, C, A, sel, params=None):
        """Each of ``A`` rotations of the query searched, the union of the answers scored exactly."""
        _, I = index.search(rotated(C, A), PER_ROTATION, params=params)
        return exact_rows(C, sel[np.unique(I[I >= 0])])

    methods = {"exact": lambda C, part, sel: exact_rows(C, sel), "ibin two-pass": two_pass}
    for A in (64, 128):
        for ef in (64, 128):
            methods[f"HNSW, {A} rotations, efSearch {ef}"] = (
                lambda C, part, sel, A=A, ef=ef: graph(hnsw[part], C, A, sel, faiss.SearchParametersHNSW(efSearch=ef)))
    methods["IVF-Flat, 64 rotations, a sixteenth of the lists"] = lambda C, part, sel: graph(ivf[part], C, 64, sel)

    def prefilter(scores, sel, C):
        keep = max(K, int(round(PREFILTER_SHARE * len(sel))))
        top = np.sort(np.argpartition(-scores, keep - 1)[:keep]) if keep < len(scores) else np.arange(len(sel))
        return exact_rows(C, sel[top])

    def spectral_prefilter(C, part, sel, qrow):
        # the engine's spectral index as it is on file, asked for the best 5 %
        keep = max(K, int(round(PREFILTER_SHARE * len(sel))))
        qv = db.vectors_of(int(rowids[qrow]), spec)
        _, found, _ = db.search_vectors(spec, qv[:1], keep)
        idx = [pos_in[part][r] for r in found[0].tolist() if r in pos_in[part]]
        return exact_rows(C, sel[np.sort(np.asarray(idx, dtype=np.int64))])

    def products(C, sel):
        """``P_m = sum_k q_km conj(d_km)`` of the query with each signature of ``sel``, first ``INVARIANT_HARMONICS``."""
        P = np.empty((len(sel), 2 * C.shape[1]), np.float32)
        signature_products(x, np.ascontiguousarray(sel, dtype=np.int64), np.ascontiguousarray(C.real),
                           np.ascontiguousarray(C.imag), P)
        h = INVARIANT_HARMONICS
        return P[:, :h] + 1j * P[:, C.shape[1] : C.shape[1] + h]

    def cross_ring_power(C, sel):
        # sum_m |P_m|^2 = <Q_m, D_m>, Q_m the query's ring-by-ring matrix q_m q_m^H: a fixed-query inner product
        return (np.abs(products(C, sel)) ** 2).sum(axis=1)

    h = INVARIANT_HARMONICS
    trip = np.array([(a - 1, b - 1, a + b - 1) for a in range(1, h + 1) for b in range(a, h + 1) if a + b <= h])

    def bispectrum(C, sel):
        # sum over m1 <= m2 of Re P_m1 P_m2 conj(P_m1+m2): unchanged when P_m turns by exp(i m alpha)
        Pc = products(C, sel).astype(np.complex64)
        out = np.empty(len(sel), np.float32)
        for s0 in range(0, len(sel), 8192):
            Q = Pc[s0 : s0 + 8192]
            out[s0 : s0 + 8192] = (Q[:, trip[:, 0]] * Q[:, trip[:, 1]] * np.conj(Q[:, trip[:, 2]])).real.sum(axis=1)
        return out

    methods_q = {
        f"exact on the best {PREFILTER_SHARE:.0%} by the spectral descriptor": spectral_prefilter,
        f"exact on the best {PREFILTER_SHARE:.0%} by the ring power of the signature": (
            lambda C, part, sel, qrow: prefilter(power[sel] @ power[qrow], sel, C)),
        f"exact on the best {PREFILTER_SHARE:.0%} by the cross-ring power sum |P_m|^2": (
            lambda C, part, sel, qrow: prefilter(cross_ring_power(C, sel), sel, C)),
        f"exact on the best {PREFILTER_SHARE:.0%} by the bispectrum of the products": (
            lambda C, part, sel, qrow: prefilter(bispectrum(C, sel), sel, C)),
    }

    rng = np.random.default_rng(1)
    syn = sorted(i for i in recs if i.startswith("syn-"))
    queries = [q for q in sorted(key) if q in recs] + [syn[i] for i in rng.choice(len(syn), min(a.synthetic, len(syn)), replace=False)]
    firearm_of = {i: ("fadul", key[i]) if i in key else ("syn", i.rsplit("-", 1)[0]) for i in recs
                  if i in key or i.startswith("syn-")}
    by_firearm: dict = {}
    for i, f in firearm_of.items():
        by_firearm.setdefault(f, set()).add(rid[i])
    stats = {m: {"ms": [], "overlap": [], "mates": {"fadul": [0, 0], "synthetic": [0, 0]}} for m in [*methods, *methods_q]}
    scores: dict[str, list[float]] = {"mates": [], "kth": []}  # exact rotation maxima
    for q in queries:
        qr = rid[q]
        kind = "fadul" if q in key else "synthetic"
        mates = by_firearm[firearm_of[q]] - {qr}
        qrows = np.flatnonzero(rowids == qr)
        tops = {}
        for m in [*methods, *methods_q]:
            t = time.perf_counter()
            best: dict[int, float] = {}
            for r in qrows:
                part = int(parts[r])
                sel = by_anchor[part][0]
                C = from_vector(x[r], R)
                rows, s = methods[m](C, part, sel) if m in methods else methods_q[m](C, part, sel, r)
                for e, v in zip(rowids[rows].tolist(), s.tolist()):
                    if v > best.get(e, -np.inf):
                        best[e] = v
            ms = (time.perf_counter() - t) * 1e3
            best.pop(qr, None)
            ranked = sorted(best, key=lambda e: -best[e])
            tops[m] = set(ranked[:K])
            if m == "exact":
                scores["mates"] += [best[e] for e in mates if e in best]
                scores["kth"].append(best[ranked[min(K, len(ranked)) - 1]])
            st = stats[m]
            st["ms"].append(ms)
            st["mates"][kind][0] += len(mates & tops[m])
            st["mates"][kind][1] += len(mates)
            st["overlap"].append(len(tops[m] & tops["exact"]) / max(1, len(tops["exact"])))
    spectral_factory = db.index(spec).factory
    db.close()
    base = float(np.median(stats["exact"]["ms"]))
    rows_out = []
    for m, st in stats.items():
        rows_out.append({
            "method": m,
            "mates_in_top_k": {k: {"found": v[0], "of": v[1], "share": v[0] / max(1, v[1])} for k, v in st["mates"].items()},
            "share_of_exact_top_k": float(np.mean(st["overlap"])),
            "ms": quantiles(st["ms"]),
            "time_vs_exact": float(np.median(st["ms"])) / base,
        })
    result = {
        "what": __doc__.split("\n\n")[0],
        "environment": env,
        "database": {"name": a.db, "exhibits": n_exhibits, "polar_signatures": int(len(rowids))},
        "parameters": {"k": K, "neighbours_per_rotation": PER_ROTATION, "prefilter_share": PREFILTER_SHARE,
                       "hnsw": {"M": 32, "efConstruction": 64}, "queries": {"fadul": sum(q in key for q in queries),
                                                                            "synthetic": sum(q not in key for q in queries)}},
        "build_s": build,
        "spectral_index": spectral_factory,
        "exact_scores": {"mates": quantiles(scores["mates"], (10, 50, 90)),
                         f"best_{K}th": quantiles(scores["kth"], (10, 50, 90))},
        "methods": rows_out,
    }
    out = write(name, result)
    for r in rows_out:
        f, s = r["mates_in_top_k"]["fadul"], r["mates_in_top_k"]["synthetic"]
        print(f"{r['method']:<58} Fadul {f['found']:>3}/{f['of']}  synthetic {s['found']:>3}/{s['of']}  "
              f"exact top-{K} {r['share_of_exact_top_k']:.1%}  {r['ms']['p50']:7.1f} ms ({r['time_vs_exact']:.2f}x exact)")
    print("exact rotation maxima: mates", {k: round(v, 3) for k, v in result["exact_scores"]["mates"].items()},
          f"{K}th best", {k: round(v, 3) for k, v in result["exact_scores"][f"best_{K}th"].items()})
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
