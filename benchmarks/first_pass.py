"""The first pass of the candidate stage over 1M signatures: now against its previous form, in one process.

The first pass (:func:`ibin.features._polar._first_pass`) scores every stored
8-bit polar signature of an anchor against the query at every rotation; at
1M signatures it is the part of the candidate stage that grows with the
database, and a lead list runs it once for the query and once per expanded
lead. This benchmark times it on 1,000,000 coarse signatures (random values
in the stored layout: the cost does not depend on them), in one thread and in
the two a search uses, alternating with the previous form, kept here as the
baseline: codes harmonic after harmonic (each harmonic's ring parts
contiguous), one signature per kernel pass summing each harmonic's products
across SIMD lanes, and the rotation maximum read along rows of a
(signatures x angles) matrix (ibin before 2026-12-03 evening). Both read the
same codes (the baseline's are the same values, columns reordered) and must
give the same scores to float32 rounding (asserted). Wall time and the
process's CPU time are reported; CPU time is the steadier on a shared machine.

Run: ``python -m benchmarks.first_pass [--repeats 9] [--rows 1000000]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from ._common import environment, quantiles, write  # noqa: E402


@njit(cache=True, nogil=True, fastmath=True)
def _products_before(x, scale, w, out):  # pragma: no cover - compiled
    """The previous per-harmonic products kernel: codes (n, h 2R) harmonic after harmonic, one signature at a time."""
    n = x.shape[0]
    h = w.shape[0]
    L = w.shape[2]
    no = (h + 1) // 2
    ne = h // 2
    for i in range(n):
        for m in range(h):
            o = m * L
            sr = np.float32(0.0)
            si = np.float32(0.0)
            for j in range(L):
                v = np.float32(x[i, o + j])
                sr += v * w[m, 0, j]
                si += v * w[m, 1, j]
            k = m // 2
            if m % 2 == 0:
                out[i, k] = sr * scale[i]
                out[i, no + k] = si * scale[i]
            else:
                out[i, 2 * no + k] = sr * scale[i]
                out[i, 2 * no + ne + k] = si * scale[i]


@njit(cache=True, nogil=True, fastmath=True)
def _row_max_before(odd, even, out):  # pragma: no cover - compiled
    """The previous rotation maximum: along rows of (signatures x angles) matrices."""
    for i in range(odd.shape[0]):
        best = even[i, 0] + abs(odd[i, 0])
        for j in range(1, odd.shape[1]):
            v = even[i, j] + abs(odd[i, j])
            if v > best:
                best = v
        out[i] = best


def _first_pass_before(q: np.ndarray, codes: np.ndarray, scale: np.ndarray, workers: int, chunk: int = 8192) -> np.ndarray:
    """The previous first pass on codes in its layout (harmonic after harmonic, ring parts inside)."""
    from ibin.features._polar import _chunked

    R = q.shape[0]
    h = codes.shape[1] // (2 * R)
    c, d = q[:, :h].real.T, q[:, :h].imag.T
    w = np.empty((h, 2, 2 * R), np.float32)
    w[:, 0, :R], w[:, 0, R:] = c, d
    w[:, 1, :R], w[:, 1, R:] = d, -c
    ang = np.arange(2 * h) * (2 * np.pi / (4 * h))

    def rotations(m: np.ndarray) -> np.ndarray:
        mh = np.outer(m, ang)
        return np.concatenate([np.cos(mh), -np.sin(mh)]).astype(np.float32)

    no = (h + 1) // 2
    T_odd, T_even = rotations(np.arange(1, h + 1, 2)), rotations(np.arange(2, h + 1, 2))
    scores = np.empty(len(codes), np.float32)

    def block(s: int, e: int) -> None:
        P = np.empty((e - s, 2 * h), np.float32)
        _products_before(codes[s:e], scale[s:e], w, P)
        _row_max_before(P[:, : 2 * no] @ T_odd, P[:, 2 * no :] @ T_even, scores[s:e])

    _chunked(block, len(codes), chunk, workers)
    return scores


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args(argv)
    from ibin.features._polar import COARSE_HARMONICS, CoarseSignatures, PolarParams, _first_pass

    env = environment(f"python -m benchmarks.first_pass --repeats {a.repeats} --rows {a.rows}")
    pp = PolarParams()
    R, h = pp.rings_kept, COARSE_HARMONICS
    rng = np.random.default_rng(0)
    coarse = CoarseSignatures.from_coarse(rng.standard_normal((a.rows, 2 * R * h), dtype=np.float32))
    # the same codes in the previous layout: harmonic m's 2R parts together (now: part j's h harmonics together)
    before_cols = np.array([j * h + m for m in range(h) for j in range(2 * R)])
    codes_before = np.ascontiguousarray(coarse.codes[:, before_cols])
    queries = [((rng.standard_normal((R, pp.harmonics)) + 1j * rng.standard_normal((R, pp.harmonics)))
                / np.sqrt(pp.dim)).astype(np.complex64) for _ in range(3)]
    modes = {"now": lambda q, w: _first_pass(q, coarse, w),
             "before": lambda q, w: _first_pass_before(q, codes_before, coarse.scale, w)}
    result = {"what": __doc__.split("\n\n")[0], "environment": env, "rows": a.rows, "coarse_harmonics": h,
              "rings": R, "repeats": a.repeats}
    for workers in (1, 2):
        dev = 0.0
        for q in queries:  # warm-up (kernels loaded) and the same scores
            now, before = modes["now"](q, workers), modes["before"](q, workers)
            dev = max(dev, float(np.abs(now - before).max() / np.abs(before).max()))
        assert dev < 1e-5, f"the first pass changed its scores ({dev:.2e} of the best)"
        wall = {m: [] for m in modes}
        cpu = {m: [] for m in modes}
        for r in range(a.repeats):
            for m, fn in (modes.items() if r % 2 == 0 else reversed(modes.items())):
                t, c = time.perf_counter(), time.process_time()
                fn(queries[r % len(queries)], workers)
                wall[m].append((time.perf_counter() - t) * 1e3)
                cpu[m].append((time.process_time() - c) * 1e3)
        row = {"wall_ms": {m: quantiles(np.array(v)) for m, v in wall.items()},
               "cpu_ms": {m: quantiles(np.array(v)) for m, v in cpu.items()},
               "max_relative_deviation": dev}
        row["before_over_now_wall_p50"] = row["wall_ms"]["before"]["p50"] / row["wall_ms"]["now"]["p50"]
        row["before_over_now_cpu_p50"] = row["cpu_ms"]["before"]["p50"] / row["cpu_ms"]["now"]["p50"]
        result[f"workers_{workers}"] = row
        print(f"{workers} worker(s), {a.rows:,} signatures: now {row['wall_ms']['now']['p50']:.0f} ms "
              f"(CPU {row['cpu_ms']['now']['p50']:.0f}), before {row['wall_ms']['before']['p50']:.0f} ms "
              f"(CPU {row['cpu_ms']['before']['p50']:.0f}): {row['before_over_now_wall_p50']:.2f}x wall, "
              f"{row['before_over_now_cpu_p50']:.2f}x CPU")
    write("first_pass", result)
    return result


if __name__ == "__main__":
    main()
