"""The first pass's 8-bit signatures made from 1M polar signatures: the quantisation kernel against its previous form, in one process.

Before its first candidate list a process derives, from the whole matrix of
polar signatures, the first harmonics in 8 bits that the first pass reads
(:class:`ibin.features._polar.CoarseSignatures`, kernel
:func:`ibin.features._kernels_nb.quantise_rows`): a one-off ``ibin search``
each time, a long-lived process once and again after a deletion. This
benchmark times it on 1,000,000 signature vectors of 512 float32 values
(random: the cost does not depend on them) cut to the 384 columns of 24
harmonics, in one thread and in the two a search uses, alternating with the
previous kernel, kept here as the baseline: one running maximum per row read
through the column indices, then each value divided and rounded (ibin until
2026-12-04). Both must give the same codes and scales, to the bit
(asserted). Wall time of the kernels, run over the rows as
:meth:`CoarseSignatures._quantised` runs them, into outputs allocated once
(a search allocates them each time: ~0.4 GB, whose first touch costs both
kernels the same and, on this machine, from nothing to 0.8 s); the array is
in memory.

Run: ``python -m benchmarks.quantise [--repeats 5] [--rows 1000000]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from ._common import ab_times, environment, write  # noqa: E402


@njit(cache=True, nogil=True)
def _quantise_before(x, rows, cols, codes, scale):  # pragma: no cover - compiled
    """The previous quantisation kernel: a single running maximum read through ``cols``, then each value."""
    m = cols.shape[0]
    for i in range(rows.shape[0]):
        r = rows[i]
        top = np.float32(0.0)
        for j in range(m):
            v = abs(x[r, cols[j]])
            if v > top:
                top = v
        s = top / np.float32(127.0)
        scale[i] = s
        for j in range(m):
            if s > 0:
                q = np.rint(x[r, cols[j]] / s)
                codes[i, j] = np.int8(min(max(q, -127.0), 127.0))
            else:
                codes[i, j] = 0


def _run(kernel, x: np.ndarray, cols: np.ndarray, codes: np.ndarray, scale: np.ndarray, workers: int) -> None:
    """All rows of ``x`` through ``kernel`` as :meth:`CoarseSignatures._quantised` runs it (chunks of 65,536 rows shared by threads)."""
    from ibin.features._polar import _chunked

    idx = np.arange(len(x), dtype=np.int64)
    _chunked(lambda s, e: kernel(x, idx[s:e], cols, codes[s:e], scale[s:e]), len(x), 1 << 16, workers)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args(argv)
    from ibin.features._kernels_nb import quantise_rows
    from ibin.features._polar import CoarseSignatures, PolarParams, coarse_columns

    env = environment(f"python -m benchmarks.quantise --repeats {a.repeats} --rows {a.rows}")
    pp = PolarParams()
    R, M = pp.rings_kept, pp.harmonics
    rng = np.random.default_rng(20261204)
    x = np.empty((a.rows, 2 * R * M), np.float32)
    for s in range(0, a.rows, 100_000):
        x[s : s + 100_000] = rng.standard_normal((min(a.rows, s + 100_000) - s, 2 * R * M), dtype=np.float32)
    x[::1000] *= np.float32(1e-3)
    x[7] = 0  # a zero row
    cols = coarse_columns(R, M, 24)
    kernels = {"now": quantise_rows, "before": _quantise_before}
    # outputs allocated and touched once, so that each run times the kernel, not the kernel's page faults
    out_ = {m: (np.zeros((a.rows, len(cols)), np.int8), np.zeros(a.rows, np.float32)) for m in kernels}
    for m, k in kernels.items():
        _run(k, x[:100], cols, out_[m][0][:100], out_[m][1][:100], 1)  # compiled kernels loaded
    times = {w: {m: [] for m in kernels} for w in (1, 2)}
    for r in range(a.repeats):
        for w in (1, 2):
            for mode in (("now", "before") if r % 2 == 0 else ("before", "now")):
                out_[mode][0][:] = 0
                t = time.perf_counter()
                _run(kernels[mode], x, cols, *out_[mode], w)
                times[w][mode].append(time.perf_counter() - t)
            if not all(np.array_equal(u, v) for u, v in zip(out_["now"], out_["before"])):
                raise AssertionError("the kernels' codes or scales differ")
    c = CoarseSignatures.from_vectors(x[:1000], R, M)  # the class runs the kernel timed as "now"
    if not (np.array_equal(c.codes, out_["now"][0][:1000]) and np.array_equal(c.scale, out_["now"][1][:1000])):
        raise AssertionError("CoarseSignatures does not give the kernel's codes")
    out = {str(w): ab_times(by) for w, by in times.items()}
    for w in out:
        print(f"{a.rows:,} rows, {w} thread(s): {out[w]['now']['p50']:.3f} s p50 against {out[w]['before']['p50']:.3f} s "
              f"({out[w]['before_over_now_p50']:.2f}x); the same codes and scales", flush=True)
    result = {"what": __doc__.split("\n\n")[0], "environment": env, "rows": a.rows, "columns": int(len(cols)),
              "repeats": a.repeats, "threads": out}
    print(f"wrote {write('quantise', result)}")
    return result


if __name__ == "__main__":
    main()
