"""Scale: candidate recall and latency against database size, and full lead lists on a 20k database.

Populations (built by ``python -m benchmarks.scale_build --work DIR``; see
:mod:`benchmarks.population`):

* ``DIR/pop-db``: synthetic cartridge cases through the real pipeline,
  10,000 firearms x 2 (default difficulty, 12.5 µm/px), in a real ibin
  database, with realistic metadata;
* ``DIR/signatures.npz``: signatures-only synthetic cartridge cases (25 µm/px,
  50,000 firearms x 4) and, beyond them, perturbed copies in signature space.

Measured here:

1. **candidate stage vs N** (10k, 100k, 1M): queries are planted pairs (the
   full-pipeline synthetic exhibits, whose mates are on file, and the 40 real
   Fadul scans planted with their mates); recall = share of true mates among
   the candidates handed to the re-rank; latency of the candidate stage (one
   thread), against the exact polar search where it is affordable;
2. **full lead lists on the 20k database** (ingest + ``search``), with Fadul
   planted: hit rates (compare with N = 40 in ``fadul_accuracy.json``), latency
   per stage (the screen and the full comparisons do not depend on N);
3. storage per exhibit; the ratio of a lead list to a brute-force re-rank of a
   whole (small) database.

Run: ``python -m benchmarks.scale --work DIR``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import RESULTS, SHARED, environment, fadul_key, quantiles, write  # noqa: E402

ANCHOR = {"firing_pin": 0, "primer": 1, "centroid": 2}
ANCHOR_NAME = {c: n for n, c in ANCHOR.items()}


def _fadul():
    from ibin.features import prepare_cartridge
    from ibin.scan import load_scan

    d = SHARED / "cartridge" / "fadul"
    key = fadul_key(d)
    prep = {n: prepare_cartridge(load_scan(d / f"{n}.x3p")) for n in sorted(key)}
    return key, prep


class Universe:
    """Signatures of N exhibits in flat arrays: polar (rows, 512) with anchor codes and owner, spectral (N, 256)."""

    def __init__(self):
        self.polar_rows: list[np.ndarray] = []
        self.polar_anchor: list[np.ndarray] = []
        self.polar_owner: list[np.ndarray] = []
        self.spectral: list[np.ndarray] = []
        self.firearm: list[np.ndarray] = []
        self.n = 0

    def add(self, polar_vec, anchors, spectral, firearm):
        """polar_vec (n, A, 512) float32 (zeros where no anchor), anchors (n, A) int8 (-1 none)."""
        n = len(spectral)
        owner = np.repeat(np.arange(self.n, self.n + n), polar_vec.shape[1])
        a = anchors.reshape(-1)
        ok = a >= 0
        self.polar_rows.append(polar_vec.reshape(-1, polar_vec.shape[-1])[ok])
        self.polar_anchor.append(a[ok])
        self.polar_owner.append(owner[ok])
        self.spectral.append(spectral.astype(np.float32))
        self.firearm.append(np.asarray(firearm))
        self.n += n

    def freeze(self):
        from ibin.features._polar import CoarseSignatures

        self.P = np.concatenate(self.polar_rows)
        self.PA = np.concatenate(self.polar_anchor)
        self.PO = np.concatenate(self.polar_owner)
        self.S = np.concatenate(self.spectral)
        self.F = np.concatenate(self.firearm)
        self.by_anchor = {a: np.flatnonzero(self.PA == a) for a in np.unique(self.PA)}
        # as the engine keeps them: the first harmonics of each anchor's signatures, in 8 bits
        self.C_by_anchor = {a: CoarseSignatures.from_vectors(self.P, 8, 32, rows=r) for a, r in self.by_anchor.items()}
        # the spectral descriptors in the FAISS index the engine would use at this size
        from ibin.engine import spectral_index_factory
        from ibin.index import VectorIndex

        t = time.perf_counter()
        self.factory = spectral_index_factory(self.n)
        self.sidx = VectorIndex(self.S.shape[1], self.factory)
        self.sidx.add(np.arange(self.n, dtype=np.int64), self.S)
        self.index_build_s = time.perf_counter() - t
        return self


def _vec(polar_complex, anchors, n_anchor=2):
    from ibin.features._polar import to_vector

    v = np.zeros((n_anchor, 512), np.float32)
    a = np.full(n_anchor, -1, np.int8)
    for i, (name, c) in enumerate(zip(anchors[:n_anchor], polar_complex[:n_anchor])):
        v[i] = to_vector(c)
        a[i] = ANCHOR[name]
    return v, a


def candidates(U: Universe, q_polar, q_anchors, q_spec, k_polar: int, k_spec: int, exclude: int, *, exact=False,
               workers: int = 1):
    """Candidate exhibit indices (polar top-k over like anchors, plus spectral top-k) for one query, in ``workers`` threads."""
    from ibin.features import rotation_max
    from ibin.features._polar import rotation_max_top

    best = {}
    for name, c in zip(q_anchors, q_polar):
        rows = U.by_anchor.get(ANCHOR[name])
        if rows is None or len(rows) == 0:
            continue
        if exact:
            s, _ = rotation_max(c, U.P, rows=rows)
            top = np.argsort(-s)[: k_polar + 1]
            pairs = zip(rows[top], s[top])
        else:
            idx, s = rotation_max_top(c, U.P, k_polar + 1, coarse=U.C_by_anchor[ANCHOR[name]], rows=rows,
                                      workers=workers)
            pairs = zip(rows[idx], s)
        for r, sc in pairs:
            o = int(U.PO[r])
            if o != exclude and sc > best.get(o, -9):
                best[o] = float(sc)
    polar = sorted(best, key=lambda o: -best[o])[:k_polar]
    if exact:
        sims = U.S @ q_spec
        if exclude >= 0:
            sims[exclude] = -9
        spec = np.argpartition(-sims, k_spec)[:k_spec]
    else:
        _, ids = U.sidx.search(q_spec[None], k_spec + 1)
        spec = [i for i in ids[0] if i >= 0 and i != exclude][:k_spec]
    return set(polar) | {int(i) for i in spec}, set(polar), {int(i) for i in spec}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=200, help="synthetic planted queries per N")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    from ibin import SearchParams

    sp_default = SearchParams()
    k_default = max(sp_default.candidates, sp_default.n_verify)
    ap.add_argument("--k-polar", type=int, default=k_default, help="polar candidates (the engine's default)")
    ap.add_argument("--k-spec", type=int, default=max(1, k_default // 4), help="spectral candidates (the engine's default)")
    ap.add_argument("--exact-queries", type=int, default=20, help="queries also run through the exact search, per N")
    ap.add_argument("--merge", action="store_true", help="keep the rows of other sizes from the last scale.json")
    ap.add_argument("--plot", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "images" / "scale.png",
                    help="PNG of the curves (default docs/images/scale.png)")
    a = ap.parse_args(argv)
    from ibin import open_database
    from ibin.features._polar import from_vector

    env = environment("python -m benchmarks.scale " + " ".join(sys.argv[1:] if argv is None else argv))
    result: dict = {"what": __doc__.split("\n\n")[0], "environment": env,
                    "parameters": {"k_polar": a.k_polar, "k_spectral": a.k_spec}}
    # ---- full-pipeline population
    db = open_database(a.work / "pop-db", readonly=True)
    recs = db.list(kind="cartridge")
    rowid_pos = {r.rowid: i for i, r in enumerate(recs)}
    rows, parts, X = db.space_matrix("cartridge-polar/height")
    srows, _, SX = db.space_matrix("cartridge/height")
    n_pop = len(recs)
    pv = np.zeros((n_pop, 2, 512), np.float32)
    pa = np.full((n_pop, 2), -1, np.int8)
    fill = np.zeros(n_pop, np.int64)
    for r, p, x in zip(rows, parts, X):
        i = rowid_pos.get(int(r))
        if i is None:
            continue
        j = fill[i]
        if j < 2:
            pv[i, j] = x
            pa[i, j] = int(p) - 16
            fill[i] += 1
    sp = np.zeros((n_pop, 256), np.float32)
    for r, x in zip(srows, SX):
        if int(r) in rowid_pos:
            sp[rowid_pos[int(r)]] = x
    pop_firearm = np.array([hash(r.metadata.get("firearm", r.id)) % (1 << 62) for r in recs], dtype=np.int64)
    db.close()
    # ---- Fadul, planted
    key, fprep = _fadul()
    fnames = sorted(fprep)
    fv, fa = zip(*(_vec(fprep[n].polar, fprep[n].anchors) for n in fnames))
    fspec = np.stack([fprep[n].descriptor for n in fnames])
    ffire = np.array([-(1 + hash(key[n]) % (1 << 60)) for n in fnames], dtype=np.int64)
    # ---- signatures only
    sig = np.load(a.work / "signatures.npz")
    s_polar, s_anch, s_spec, s_fire = sig["polar"], sig["anchors"], sig["spectral"], sig["firearm"]
    rng = np.random.default_rng(1)
    q_syn = rng.choice(n_pop, size=min(a.queries, n_pop), replace=False)
    sizes = [int(s) for s in a.sizes.split(",")]
    curves = []
    if a.merge and (RESULTS / "scale.json").exists():
        # keep the other sizes of the last run (each row says when and how it was made)
        curves = [c for c in json.loads((RESULTS / "scale.json").read_text()).get("curves", [])
                  if c["N"] not in sizes]
    for N in sizes:
        U = Universe()
        U.add(np.stack(fv), np.stack(fa), fspec, ffire)  # Fadul first: indices 0..39
        take = min(n_pop, N - len(fnames))
        U.add(pv[:take], pa[:take], sp[:take], pop_firearm[:take])
        rest = N - U.n
        made = "full pipeline"
        if rest > 0:
            ts = min(rest, len(s_spec))
            vecs = np.zeros((ts, 2, 512), np.float32)
            from ibin.features._polar import to_vector

            for j in range(2):
                ok = s_anch[:ts, j] >= 0
                if ok.any():
                    vecs[ok, j] = to_vector(s_polar[:ts, j][ok])
            U.add(vecs, s_anch[:ts], s_spec[:ts], s_fire[:ts])
            rest -= ts
            made = "full pipeline + signatures only"
        if rest > 0:
            from .population import perturbed_copies

            # shot-to-shot similarity measured on the signatures-only population
            sim_p, sim_s = _shot_similarity(s_polar, s_anch, s_spec, s_fire)
            vecs = np.zeros((rest, 2, 512), np.float32)
            anch = np.full((rest, 2), -1, np.int8)
            spec = np.zeros((rest, 256), np.float32)
            fire = np.zeros(rest, np.int64)
            from ibin.features._polar import to_vector

            src_polar = [s_polar[i][s_anch[i] >= 0] for i in range(len(s_spec))]
            for j, (i, p, s) in enumerate(perturbed_copies(src_polar, s_spec, rest, polar_similarity=sim_p,
                                                           spectral_similarity=sim_s, seed=N)):
                k = len(p)
                vecs[j, :k] = to_vector(p)
                anch[j, :k] = s_anch[i, :k]
                spec[j] = s
                fire[j] = s_fire[i]
            U.add(vecs, anch, spec, fire)
            made += " + perturbed copies"
        U.freeze()
        # queries: planted synthetic pairs (their index in U) and Fadul
        qs = [(int(len(fnames) + i), "synthetic") for i in q_syn if len(fnames) + i < U.n] + [(i, "fadul") for i in range(len(fnames))]
        hit, hit_p, hit_s, lat = {"synthetic": [], "fadul": []}, {"synthetic": [], "fadul": []}, {"synthetic": [], "fadul": []}, []
        hit_x = {"synthetic": [], "fadul": []}
        lat_cores = []
        def query(qi: int, kind: str):
            """(polar signatures, their anchors, spectral descriptor) of a query."""
            if kind == "fadul":
                prep = fprep[fnames[qi]]
                return prep.polar, prep.anchors, prep.descriptor
            pos = qi - len(fnames)
            js = [j for j in range(2) if pa[pos, j] >= 0]
            return [from_vector(pv[pos, j], 8) for j in js], [ANCHOR_NAME[int(pa[pos, j])] for j in js], sp[pos]

        for qi, kind in qs:
            qp, qa, qsv = query(qi, kind)
            t = time.perf_counter()
            union, pol, spe = candidates(U, qp, qa, qsv, a.k_polar, a.k_spec, qi)
            lat.append(time.perf_counter() - t)
            # the same search in the engine's default threads (both cores here)
            t = time.perf_counter()
            same = candidates(U, qp, qa, qsv, a.k_polar, a.k_spec, qi, workers=sp_default.workers)[0]
            lat_cores.append(time.perf_counter() - t)
            assert same == union, "the threaded search must find the same candidates"
            mates = [j for j in np.flatnonzero(U.F == U.F[qi]) if j != qi]
            for m in mates:
                hit[kind].append(m in union)
                hit_p[kind].append(m in pol)
                hit_s[kind].append(m in spe)
            # query expansion as the engine runs it, with the mates among the candidates as the
            # identified leads (at N = 40 and 20k every mate that reaches the full comparison is
            # identified: Fadul CMC >= 13): each lead's own candidates, a quarter of the budget
            from ibin.engine import EXPAND_LEADS

            expanded = set(union)
            for lead in [m for m in mates if m in union][:EXPAND_LEADS]:
                lr = np.flatnonzero(U.PO == lead)  # the lead's stored signatures, as the engine reads them
                lp = [from_vector(U.P[r], 8) for r in lr]
                la = [ANCHOR_NAME[int(U.PA[r])] for r in lr]
                expanded |= candidates(U, lp, la, U.S[lead], max(1, a.k_polar // 4), max(1, a.k_polar // 16), lead)[0]
            hit_x[kind] += [m in expanded for m in mates]
        row = {"N": U.n, "population": made, "queries": len(qs),
               "recall": {k: float(np.mean(v)) for k, v in hit.items()},
               "recall_after_expansion": {k: float(np.mean(v)) for k, v in hit_x.items()},
               "recall_polar_only": {k: float(np.mean(v)) for k, v in hit_p.items()},
               "recall_spectral_only": {k: float(np.mean(v)) for k, v in hit_s.items()},
               "candidate_ms": quantiles(np.array(lat) * 1e3),
               "candidate_ms_threads": {"threads": sp_default.workers, **quantiles(np.array(lat_cores) * 1e3)}}
        # exact polar search on a few queries, for the recall of the two-pass search
        ex_hit, ex_lat, ex_recall, fast_recall = [], [], [], []
        for qi, kind in qs[:: max(1, len(qs) // a.exact_queries)]:
            qp, qa, qsv = query(qi, kind)
            t = time.perf_counter()
            ue, pe, _ = candidates(U, qp, qa, qsv, a.k_polar, a.k_spec, qi, exact=True)
            ex_lat.append(time.perf_counter() - t)
            uf, pf, _ = candidates(U, qp, qa, qsv, a.k_polar, a.k_spec, qi)
            ex_hit.append(len(pe & pf) / max(1, len(pe)))
            mates = [j for j in np.flatnonzero(U.F == U.F[qi]) if j != qi]
            ex_recall += [m in ue for m in mates]
            fast_recall += [m in uf for m in mates]
        row["two_pass_vs_exact_polar_overlap"] = float(np.mean(ex_hit))
        row["exact_subsample"] = {"queries": len(ex_lat), "mates": len(ex_recall),
                                  "recall_exact": float(np.mean(ex_recall)) if ex_recall else None,
                                  "recall_ibin": float(np.mean(fast_recall)) if fast_recall else None}
        row["exact_candidate_ms"] = quantiles(np.array(ex_lat) * 1e3)
        row["first_pass"] = _first_pass_vs_dense(U, [query(qi, kind) for qi, kind in qs[:: max(1, len(qs) // 20)]])
        row["spectral_index"] = U.factory
        row["spectral_index_build_s"] = U.index_build_s
        row["bytes_per_exhibit_signatures"] = float(
            (U.P.nbytes + U.S.nbytes + sum(c.nbytes for c in U.C_by_anchor.values())) / U.n)
        row["measured"] = env["when"]
        curves.append(row)
        curves.sort(key=lambda r: r["N"])
        print(f"N={U.n}: recall synthetic {row['recall']['synthetic']:.3f}, Fadul {row['recall']['fadul']:.3f}; "
              f"candidates p50 {row['candidate_ms']['p50']:.0f} ms; two-pass = exact {row['two_pass_vs_exact_polar_overlap']:.3f}")
        result["curves"] = curves
        result["projection_10M"] = project(curves)
        write("scale", result)
    if a.plot:
        plot(result, a.plot)
    print(markdown_table(result))
    return result


def _first_pass_vs_dense(U: Universe, queries) -> dict:
    """The first pass of the rotation search against its plain form, in this process, one thread.

    Baseline: the query's first harmonics rotated to each of the ``4 h``
    angles as a matrix, and one BLAS product of the stored coarse signatures
    with it (what the search did before 2026-12-02), on the float32 values
    the 8-bit codes stand for. Same scores (to float32 rounding) is
    asserted; times are per anchor searched. Also reported: how far the
    8-bit scores are from those of the float32 signatures
    (``max_quantisation_deviation``, relative to the best score).
    """
    from ibin.features._polar import _first_pass, coarse_columns

    ours, base, dev, qdev = [], [], [], []
    for qp, qa, _ in queries:
        for name, q in zip(qa, qp):
            coarse = U.C_by_anchor.get(ANCHOR[name])
            if coarse is None:
                continue
            C = coarse.values()
            R = q.shape[0]
            h = C.shape[1] // (2 * R)
            t = time.perf_counter()
            ang = np.arange(4 * h) * (2 * np.pi / (4 * h))
            rot = q[None, :, :h] * np.exp(1j * np.outer(ang, np.arange(1, h + 1)))[:, None, :]  # (A, R, h)
            V = np.stack([rot.real, rot.imag], axis=1).reshape(len(ang), -1).T
            V = np.ascontiguousarray(V, dtype=np.float32)  # rows in the coarse_columns order
            dense = np.concatenate([(C[s:s + (1 << 15)] @ V).max(axis=1) for s in range(0, len(C), 1 << 15)])
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            s = _first_pass(q, coarse, workers=1)
            ours.append(time.perf_counter() - t)
            dev.append(float(np.abs(s - dense).max() / np.abs(dense).max()))
            rows = U.by_anchor[ANCHOR[name]]
            for a in range(0, len(rows), 1 << 15):  # the float32 signatures the codes were made from
                f = U.P[rows[a:a + (1 << 15)]][:, coarse_columns(R, 32, h)] @ V
                qdev.append(float(np.abs(f.max(axis=1) - s[a:a + (1 << 15)]).max() / np.abs(dense).max()))
    assert max(dev) < 1e-4, "the first pass must score as the dense rotation search"
    return {"anchors_searched": len(ours), "rows_per_anchor": int(np.median([len(c) for c in U.C_by_anchor.values()])),
            "ibin_ms": quantiles(np.array(ours) * 1e3), "dense_rotations_ms": quantiles(np.array(base) * 1e3),
            "speedup_median": float(np.median(np.array(base) / np.array(ours))), "max_relative_deviation": max(dev),
            "max_quantisation_deviation": max(qdev)}


def plot(result: dict, path: Path) -> Path:
    """Candidate latency (p50, p95; exact search for comparison) and recall against N, on log axes, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = result["curves"]
    N = [r["N"] for r in c]
    fig = Figure(figsize=(9, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    a, b = fig.subplots(1, 2)
    a.loglog(N, [r["candidate_ms"]["p50"] for r in c], "o-", color="#00204c", label="ibin candidates p50, 1 thread")
    a.loglog(N, [r["candidate_ms"]["p95"] for r in c], "o--", color="#00204c", alpha=0.6, label="ibin candidates p95, 1 thread")
    threaded = [r for r in c if "candidate_ms_threads" in r]
    if threaded:
        a.loglog([r["N"] for r in threaded], [r["candidate_ms_threads"]["p50"] for r in threaded], "D-", color="#7c7b78",
                 label=f"ibin candidates p50, {threaded[0]['candidate_ms_threads']['threads']} threads")
    a.loglog(N, [r["exact_candidate_ms"]["p50"] for r in c], "s:", color="#c8a800", label="exact search p50")
    if result.get("projection_10M"):
        p = result["projection_10M"]
        a.loglog([N[-1], p["N"]], [c[-1]["candidate_ms"]["p50"], p["candidate_ms_p50"]], ":", color="#00204c")
        a.plot([p["N"]], [p["candidate_ms_p50"]], "o", mfc="white", color="#00204c", label="projected")
    a.axhline(5.0, color="#b22222", lw=0.8, ls="--", label="issue 5 target at 1M: 5 ms")
    a.set_xlabel("exhibits on file N")
    a.set_ylabel("candidate stage, ms")
    a.grid(True, which="both", alpha=0.3)
    a.legend(fontsize=8)
    for kind, style in (("synthetic", "o-"), ("fadul", "s--")):
        b.semilogx(N, [100 * r["recall"][kind] for r in c], style, label=f"true mates in candidates: {kind}")
    b.semilogx(N, [100 * (r["exact_subsample"]["recall_exact"] or 0) for r in c], "^:", label="exact search (subsample)")
    b.set_xlabel("exhibits on file N")
    b.set_ylabel("recall, %")
    b.set_ylim(min(80, *[100 * r["recall"]["synthetic"] - 2 for r in c]), 100.5)
    b.grid(True, which="both", alpha=0.3)
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def markdown_table(result: dict) -> str:
    """The curves as the README's table."""
    lines = ["| N | population | spectral index | candidates p50 / p95, 1 thread (ms) | p50, 2 threads (ms) | "
             "exact search p50, 1 thread (ms) | mates in candidates: synthetic / Fadul | "
             "exact search (queries) | with query expansion: synthetic / Fadul |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["curves"]:
        ex = r["exact_subsample"]
        th = r.get("candidate_ms_threads")
        threaded = f"{th['p50']:.0f}" if th else ""
        x = r.get("recall_after_expansion")
        expanded = f"{100 * x['synthetic']:.1f} % / {100 * x['fadul']:.1f} %" if x else ""
        lines.append(
            f"| {r['N']:,} | {r['population']} | {r['spectral_index']} | "
            f"{r['candidate_ms']['p50']:.0f} / {r['candidate_ms']['p95']:.0f} | {threaded} | "
            f"{r['exact_candidate_ms']['p50']:.0f} | "
            f"{100 * r['recall']['synthetic']:.1f} % / {100 * r['recall']['fadul']:.1f} % | "
            f"{100 * (ex['recall_exact'] or 0):.1f} % (ibin {100 * (ex['recall_ibin'] or 0):.1f} %) of {ex['mates']} mates "
            f"({ex['queries']}) | {expanded} |")
    p = result.get("projection_10M")
    if p:
        threaded = f"{p['candidate_ms_p50_threads']:.0f}" if p.get("candidate_ms_p50_threads") else ""
        lines.append(f"| 10,000,000 (projected) | | | {p['candidate_ms_p50']:.0f} | {threaded} | | | | |")
    return "\n".join(lines)


def _line(pts: list[tuple[float, float]], n: int) -> tuple[float, float, list[float]] | None:
    """``(t(n), slope per exhibit, sizes used)`` of a straight line through the points of 100,000 and more (or the two largest)."""
    big = [p for p in pts if p[0] >= 100_000]
    pts = big if len(big) >= 2 else pts[-2:]
    if len(pts) < 2:
        return None
    N, t = np.array(pts, dtype=float).T
    b, a = np.polyfit(N, t, 1)
    b = max(b, 0.0)
    return float(a + b * n), float(b), [float(x) for x in N]


def project(curves: list[dict], n: int = 10_000_000) -> dict | None:
    """Candidate latency at ``n``: a straight line ``t = a + b N`` through the measured sizes.

    Both passes of the candidate stage read every stored signature, so the
    cost grows linearly with N; the line is fitted to the sizes of 100,000
    and more (the two-pass regime), or to the two largest when fewer.
    """
    one = _line([(r["N"], r["candidate_ms"]["p50"]) for r in curves], n)
    if one is None:
        return None
    t, b, N = one
    out = {"N": n, "candidate_ms_p50": t, "ms_per_million": b * 1e6,
           "bytes_signatures": curves[-1]["bytes_per_exhibit_signatures"] * n,
           "how": f"straight line through the p50 at N = {', '.join(str(int(x)) for x in N)}"}
    th = _line([(r["N"], r["candidate_ms_threads"]["p50"]) for r in curves if "candidate_ms_threads" in r], n)
    if th is not None:
        out["candidate_ms_p50_threads"] = th[0]
    return out


def _shot_similarity(polar, anch, spec, fire, n: int = 500) -> tuple[float, float]:
    """Median similarity of two shots of one firearm (polar at the best rotation, spectral), measured."""
    from ibin.features import rotation_max

    ps, ss = [], []
    for i in range(0, min(len(fire) - 1, 4 * n), 4):
        if fire[i] != fire[i + 1] or anch[i, 0] < 0 or anch[i, 0] != anch[i + 1, 0]:
            continue
        ps.append(float(rotation_max(polar[i, 0], polar[i + 1, 0][None])[0][0]))
        ss.append(float(spec[i] @ spec[i + 1]))
    return float(np.median(ps)), float(np.median(ss))


if __name__ == "__main__":
    main()
