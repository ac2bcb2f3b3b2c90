"""What a 5 ms candidate stage at 1M exhibits would have to read, and what that keeps.

Issue 5 asks for a candidate stage of at most 5 ms p50 at N = 1M with at
least 99 % of true mates handed to the re-rank. ibin's stage is an exact
linear scan in two passes (:func:`ibin.features._polar.rotation_max_top`);
the sub-linear indexes tried lose mates (``polar_index``, ``canonical``).
This benchmark measures the budget a linear scan would have and what fits
in it, on this machine, in one process:

1. **bandwidth**: the time to stream 1M rows of ``b`` bytes through the two
   threads a search uses (a Numba kernel summing 8-bit codes, dispatched as
   the first pass is), so the bytes per exhibit that can be read at all in
   5 ms;
2. **second pass**: the exact rotation score (:func:`ibin.features.rotation_max`,
   all 32 harmonics) of 2,500 and 10,000 rows, the re-scoring any cheaper
   first pass must hand its best to;
3. **what smaller signatures keep**: for first-pass representations of
   ``r`` rings (the stored 8 projected to ``r`` by a fixed random projection
   per harmonic, as the signature's 26 rings were projected to 8) and ``h``
   harmonics (``2 r h`` values, bytes at 8 bits), the share of true mates
   ranked by their best-rotation score (``4 h`` rotations) within the best
   0.25 %, 1 % and 5 % of the population (the first pass hands 10,000
   rows, 1 %, to the second at 1M; 2,500 would leave it ~3 ms), and the
   time of ibin's first-pass kernel over 1M such rows in 8 bits (and, for
   ibin's own first pass, the recall at 64 rotations instead of 96). The rings
   are projected either by a fixed random projection with orthonormal rows
   or onto each harmonic's principal components across rings (the
   projection keeping the most energy; from the population, no labels).

Population: the signatures-only synthetic cartridge cases of
``DIR/signatures.npz`` (``python -m benchmarks.scale_build --work DIR``;
50,000 firearms x 4 shots at 25 µm/px), the firing-pin anchor; ``--queries``
of them, each with its 3 mates among ~200,000. The mates' ranks are shares
of the population, so they stand for a larger one of the same kind; the
recall of the real Fadul mates is lower than the synthetic ones' at every
setting (``scale.json``), so this is the optimistic side.

Run: ``python -m benchmarks.candidate_budget --work DIR [--queries 200]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from ._common import environment, quantiles, write  # noqa: E402

RINGS = (8, 4, 2, 1)
HARMONICS = (32, 24, 16, 12, 8)
SHARES = (0.0025, 0.01, 0.05)
N_TARGET = 1_000_000
TARGET_MS = 5.0


@njit(cache=True, nogil=True, fastmath=True)
def _stream(x):  # pragma: no cover - compiled
    """Sum of a block of 8-bit codes: reads every byte once, a few operations per byte."""
    acc = np.zeros(64, np.int32)
    flat = x.ravel()
    n = flat.size - flat.size % 64
    for i in range(0, n, 64):
        for j in range(64):
            acc[j] += flat[i + j]
    return acc.sum()


def _wall_ms(fn, repeats: int) -> dict:
    """Wall-time quantiles (ms) of ``fn(i)`` for ``i`` in ``range(repeats)``."""
    ts = []
    for i in range(repeats):
        t = time.perf_counter()
        fn(i)
        ts.append(time.perf_counter() - t)
    return quantiles(np.array(ts) * 1e3)


def _bandwidth(bytes_per_row: int, repeats: int, workers: int = 2) -> dict:
    """Wall time to stream N_TARGET rows of ``bytes_per_row`` 8-bit codes in ``workers`` threads (blocks of 8,192 rows)."""
    from ibin.features._polar import _chunked

    x = np.ones((N_TARGET, bytes_per_row), np.int8)
    _stream(x[:8192])
    ms = _wall_ms(lambda _: _chunked(lambda s, e: _stream(x[s:e]), len(x), 8192, workers), repeats)
    return {"bytes_per_row": bytes_per_row, "ms": ms, "gb_per_s": x.nbytes / 2**30 / (ms["p50"] / 1e3)}


def _projected(P: np.ndarray, r: int, h: int, how: str) -> np.ndarray:
    """The first ``h`` harmonics of ``P`` (n, R, 32), its R rings projected to ``r`` per harmonic.

    ``how``: ``"random"``, a fixed random projection with orthonormal rows
    (the same for every harmonic, as the signature's own); ``"principal"``,
    each harmonic's ``r`` principal components across rings (from the
    population's ring covariance of that harmonic; no labels), the
    projection that keeps the most energy.
    """
    R = P.shape[1]
    if r == R:
        return np.ascontiguousarray(P[:, :, :h])
    out = np.empty((len(P), r, h), np.complex64)
    if how == "random":
        g, _ = np.linalg.qr(np.random.default_rng(20261205).standard_normal((R, r)))
        for m in range(h):
            out[:, :, m] = P[:, :, m] @ g.astype(np.complex64)
        return out
    for m in range(h):
        x = P[::10, :, m]
        _, vec = np.linalg.eigh(x.T @ x.conj() / len(x))  # Hermitian ring covariance, ascending eigenvalues
        out[:, :, m] = P[:, :, m] @ vec[:, ::-1][:, :r].conj().astype(np.complex64)
    return out


def _first_pass_ms(codes: np.ndarray, r: int, h: int, repeats: int) -> dict:
    """Wall time of ibin's first-pass kernel over N_TARGET rows of ``r`` rings x ``h`` harmonics in 8 bits, two threads.

    ``codes``: random 8-bit codes, at least ``2 r h`` columns (the kernel's
    cost does not depend on their values); the first ``2 r h`` are taken.
    """
    from ibin.features._polar import CoarseSignatures, _first_pass

    coarse = CoarseSignatures(np.ascontiguousarray(codes[:, : 2 * r * h]), np.ones(len(codes), np.float32))
    rng = np.random.default_rng(0)
    q = (rng.standard_normal((r, h)) + 1j * rng.standard_normal((r, h))).astype(np.complex64)
    _first_pass(q, coarse[:8192], 2)
    return _wall_ms(lambda _: _first_pass(q, coarse, 2), repeats)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args(argv)
    from ibin.features import rotation_max
    from ibin.features._polar import to_vector

    cmd = f"python -m benchmarks.candidate_budget --work DIR --queries {a.queries}"
    env = environment(cmd)
    src = a.work / "signatures.npz"
    if not src.is_file():
        sys.exit(f"{src}: not found; make it with python -m benchmarks.scale_build --work {a.work}")
    z = np.load(src)
    fp = z["anchors"][:, 0] == 0  # the firing-pin anchor (scale.ANCHOR)
    P, F = z["polar"][fp, 0], z["firearm"][fp]
    n = len(P)
    qs = np.random.default_rng(1).choice(n, a.queries, replace=False)
    mates = [np.nonzero((F == F[q]) & (np.arange(n) != q))[0] for q in qs]

    bandwidth = [_bandwidth(b, a.repeats) for b in (384, 96, 48)]
    gbs = float(np.median([b["gb_per_s"] for b in bandwidth]))
    budget_bytes = gbs * 2**30 * TARGET_MS / 1e3 / N_TARGET

    V = to_vector(P)
    second = {}
    for rows in (2_500, 10_000):
        idx = [np.sort(np.random.default_rng(i).choice(n, rows, replace=False)) for i in range(a.repeats)]
        second[str(rows)] = _wall_ms(lambda i: rotation_max(P[qs[i % len(qs)]], V, rows=idx[i], workers=2), a.repeats)
    del V
    codes = np.random.default_rng(0).integers(-127, 128, (N_TARGET, 2 * P.shape[1] * max(HARMONICS)), dtype=np.int8)

    table = []
    configs = [(how, r, h, 4 * h) for r in RINGS for how in (("stored",) if r == P.shape[1] else ("random", "principal"))
               for h in HARMONICS]
    configs.append(("stored", P.shape[1], 24, 64))  # ibin's first pass at fewer rotations (more than 2 h are needed)
    for how, r, h, angles in configs:
        C = _projected(P, r, h, how)
        X = to_vector(C)
        ranks = []
        for q, ms in zip(qs, mates):
            s, _ = rotation_max(C[q], X, angles=angles, workers=2)
            s[q] = -np.inf
            ranks += [float((s > s[m]).sum()) / (n - 1) for m in ms]
        ranks = np.array(ranks)
        row = {"rings": r, "projection": how, "harmonics": h, "rotations": angles, "bytes_8bit": 2 * r * h,
               **{f"mates_in_best_{100 * f:g}%": float((ranks < f).mean()) for f in SHARES},
               "first_pass_1M_two_threads_ms": _first_pass_ms(codes, r, h, max(3, a.repeats // 3)) if angles == 4 * h else None}
        table.append(row)
        if row["first_pass_1M_two_threads_ms"] is None:
            print(f"rings {r:d} harmonics {h:2d} at {angles} rotations: mates in the best 0.25 % "
                  f"{row['mates_in_best_0.25%']:.3f}, 1 % {row['mates_in_best_1%']:.3f}", flush=True)
            continue
        print(f"rings {r:d} ({how}) harmonics {h:2d} {2 * r * h:4d} B: mates in the best 0.25 % "
              f"{row['mates_in_best_0.25%']:.3f}, 1 % {row['mates_in_best_1%']:.3f}, 5 % {row['mates_in_best_5%']:.3f}; "
              f"first pass at 1M {row['first_pass_1M_two_threads_ms']['p50']:.0f} ms", flush=True)
    spare_ms = TARGET_MS - second["2500"]["p50"]  # what is left for the first pass
    fits = [t for t in table if t["first_pass_1M_two_threads_ms"] and t["first_pass_1M_two_threads_ms"]["p50"] <= spare_ms]
    result = {
        **env,
        "population": {"file": "signatures.npz", "exhibits": n, "queries": len(qs), "mates": int(sum(map(len, mates)))},
        "stream_1M_rows_two_threads": bandwidth,
        "median_gb_per_s": gbs,
        "bytes_per_exhibit_readable_in_5_ms_at_1M": budget_bytes,
        "second_pass_exact_two_threads_ms": second,
        "first_pass_representations": table,
        "first_pass_ms_left_after_second_pass_of_2500": spare_ms,
        "best_first_pass_within_5_ms": max(fits, key=lambda t: t["mates_in_best_0.25%"]) if fits else None,
    }
    print(f"streaming {gbs:.1f} GB/s: {budget_bytes:.0f} bytes per exhibit in 5 ms at 1M; exact second pass "
          f"{second['2500']['p50']:.1f} ms for 2,500 rows, {second['10000']['p50']:.1f} ms for 10,000")
    print("written", write("candidate_budget", result))
    return result


if __name__ == "__main__":
    main()
