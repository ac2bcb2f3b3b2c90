"""Anchored polar signatures: the breech face seen from its firing-pin impression.

The firing-pin aperture is part of the breech face, so the impression it
leaves marks the same place of the breech-face pattern on every cartridge a
firearm fires (in the Fadul set the aperture centre agrees between shots to
32 µm median, 78 µm at the 90th percentile, where the primer outline agrees
to 89 µm median). Sampled on rings around that anchor, the surface becomes
a polar image in which the unknown rotation of the cartridge case is a
circular shift along the angle; in the Fourier domain along the angle, a
shift multiplies harmonic ``m`` by ``exp(i m alpha)``. The signature keeps,
for the first ``harmonics`` harmonics of each ring, the complex coefficient:
phase and all, so two signatures can be compared at every rotation at once
(:func:`rotation_max`), which keeps the discriminating power of an areal
correlation for a few hundred numbers.

Two anchors are used when found: the firing-pin aperture and the primer
centre (a second chance when one of them is misplaced). Rings are reduced
with a fixed random projection per harmonic (Johnson-Lindenstrauss; the
same for every exhibit, seeded), which commutes with rotation and keeps
inner products in expectation.

References
----------
W. B. Johnson, J. Lindenstrauss, "Extensions of Lipschitz mappings into a
Hilbert space", Contemporary Mathematics 26:189-206, 1984.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CoarseSignatures", "PolarParams", "polar_signature", "rotation_max", "rotation_max_top", "rotate_signature", "anchors_of"]


@dataclass(frozen=True)
class PolarParams:
    """Parameters of the anchored polar signature (µm).

    Attributes
    ----------
    ring_um : float
        Ring spacing.
    radius_um : float
        Outermost ring (a 9 mm primer is about 2.2 mm in radius; the
        firing pin may sit up to about 0.4 mm off its centre).
    lowpass_um : float
        Gaussian low-pass applied before sampling: the anchor is known to
        tens of micrometres, so shorter wavelengths would not agree
        between shots.
    harmonics : int
        Angular harmonics kept per ring (angular resolution about
        ``2 pi r / harmonics`` at radius ``r``).
    angles : int
        Samples along each ring.
    rings_kept : int
        Rings after the random projection, per harmonic.
    """

    ring_um: float = 100.0
    radius_um: float = 2600.0
    lowpass_um: float = 150.0
    harmonics: int = 32
    angles: int = 128
    rings_kept: int = 8

    @property
    def n_rings(self) -> int:
        return int(round(self.radius_um / self.ring_um))

    @property
    def dim(self) -> int:
        """Length of the real signature vector (real and imaginary parts)."""
        return 2 * self.rings_kept * self.harmonics


def _projection(n_rings: int, kept: int) -> np.ndarray:
    rng = np.random.default_rng(20261123)
    return (rng.standard_normal((kept, n_rings)) / math.sqrt(kept)).astype(np.float32)


def anchors_of(valid: np.ndarray, pixel_um: float, firing_pin, primer) -> list[tuple[str, float, float]]:
    """Anchor points (name, x µm, y µm) in the surface's frame.

    The firing-pin aperture centre and the primer centre when detected (the
    second only when it is more than a ring spacing away from the first);
    otherwise the centroid of the measured region.
    """
    out: list[tuple[str, float, float]] = []
    if firing_pin is not None:
        out.append(("firing_pin", float(firing_pin.x_um), float(firing_pin.y_um)))
    if primer is not None and (not out or math.hypot(primer.x_um - out[0][1], primer.y_um - out[0][2]) > 50.0):
        out.append(("primer", float(primer.x_um), float(primer.y_um)))
    if not out:
        yy, xx = np.nonzero(valid)
        out.append(("centroid", float((xx.mean() + 0.5) * pixel_um), float((yy.mean() + 0.5) * pixel_um)))
    return out


def polar_signature(surface: np.ndarray, pixel_um: float, anchor_xy_um: tuple[float, float],
                    params: PolarParams | None = None) -> np.ndarray:
    """The anchored polar signature of a surface, as complex coefficients.

    Parameters
    ----------
    surface : ndarray
        Band-passed surface, NaN = missing.
    pixel_um : float
    anchor_xy_um : (float, float)
        Anchor (x, y) in µm in the surface's frame (x right, y down the rows).
    params : PolarParams, optional

    Returns
    -------
    ndarray (rings_kept, harmonics), complex64
        Unit energy. Angles run counter-clockwise as displayed, so a
        counter-clockwise rotation of the surface by ``alpha`` multiplies
        harmonic ``m`` by ``exp(-i m alpha)`` (see :func:`rotate_signature`).
    """
    import cv2

    from ._filters import gaussian_lowpass

    p = params or PolarParams()
    s = gaussian_lowpass(np.asarray(surface, dtype=np.float64), pixel_um, p.lowpass_um)
    m = np.isfinite(s)
    z = np.where(m, s, 0.0).astype(np.float32)
    rr = (np.arange(p.n_rings) + 0.5) * p.ring_um
    tt = np.arange(p.angles) * (2 * math.pi / p.angles)
    ax, ay = anchor_xy_um
    X = ((ax + rr[:, None] * np.cos(tt)[None]) / pixel_um - 0.5).astype(np.float32)
    Y = ((ay - rr[:, None] * np.sin(tt)[None]) / pixel_um - 0.5).astype(np.float32)
    P = cv2.remap(z, X, Y, cv2.INTER_LINEAR, borderValue=0)
    W = cv2.remap(m.astype(np.float32), X, Y, cv2.INTER_LINEAR, borderValue=0)
    P = np.where(W > 0.99, P, 0.0)
    C = np.fft.rfft(P, axis=1)[:, 1 : p.harmonics + 1]
    C = _projection(p.n_rings, p.rings_kept) @ C
    e = float(np.sqrt((np.abs(C) ** 2).sum()))
    return (C / e if e > 0 else C).astype(np.complex64)


def rotate_signature(C: np.ndarray, rotation_deg: float) -> np.ndarray:
    """The signature of the surface rotated counter-clockwise by ``rotation_deg``."""
    m = np.arange(1, C.shape[-1] + 1)
    return (C * np.exp(-1j * m * math.radians(rotation_deg))).astype(np.complex64)


def to_vector(C: np.ndarray) -> np.ndarray:
    """Real vector (real parts then imaginary parts) of one or more signatures."""
    C = np.asarray(C)
    flat = C.reshape(C.shape[: C.ndim - 2] + (-1,))
    return np.concatenate([flat.real, flat.imag], axis=-1).astype(np.float32)


def from_vector(v: np.ndarray, rings_kept: int) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    h = v.shape[-1] // 2
    C = v[..., :h] + 1j * v[..., h:]
    return C.reshape(v.shape[:-1] + (rings_kept, h // rings_kept)).astype(np.complex64)


def _chunked(fn, n: int, chunk: int, workers: int) -> None:
    """``fn(start, stop)`` over ``[0, n)`` in chunks, in ``workers`` threads (NumPy, BLAS and the FFT release the GIL)."""
    from .._threads import map_threads

    map_threads(lambda t: fn(*t), [(s, min(s + chunk, n)) for s in range(0, n, chunk)], workers)


def rotation_max(query: np.ndarray, stored: np.ndarray, *, rows: np.ndarray | None = None, angles: int = 128,
                 chunk: int = 8192, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Best correlation of a query signature with stored ones over all rotations.

    Rotating the stored surface counter-clockwise by ``alpha`` multiplies
    its harmonic ``m`` by ``exp(-i m alpha)``, so the inner product becomes
    ``Re sum_m P_m exp(i m alpha)`` with ``P_m = sum_k q_km conj(d_km)``: the
    per-harmonic products (a Numba kernel reading the stored vectors in
    place) and one inverse FFT over the angle per stored signature.

    Parameters
    ----------
    query : ndarray (rings_kept, harmonics), complex
    stored : ndarray (n, rings_kept, harmonics), complex, or (N, 2 rings_kept harmonics) float32
        Stored signatures, as complex coefficients or as the real vectors of
        :func:`to_vector` (the form the database keeps; not copied).
    rows : ndarray (n,) int, optional
        With real vectors: score only these rows of ``stored``.
    angles : int
        Rotations evaluated, evenly over 360°: four per harmonic keeps the
        sampled maximum within a few per cent of the true peak (two, the
        Nyquist rate, can miss half of it).
    workers : int
        Threads, each taking chunks of ``chunk`` stored signatures.

    Returns
    -------
    scores : ndarray (n,), float32
        Correlation in [-1, 1] (unit-energy signatures).
    rotation_deg : ndarray (n,), float32
        Rotation of the stored surface onto the query at the best score.
    """
    from scipy import fft

    from ._kernels_nb import signature_products

    q = np.asarray(query, dtype=np.complex64)
    R, M = q.shape
    if angles < 2 * M + 2:
        raise ValueError("angles must be more than twice the number of harmonics")
    if np.iscomplexobj(stored):
        if rows is not None:
            raise ValueError("rows selects among signature vectors, not complex signatures")
        x = to_vector(stored)
    else:
        x = np.ascontiguousarray(stored, dtype=np.float32)  # no copy when so already (the kernel assumes it)
    if x.ndim != 2 or x.shape[1] != 2 * R * M:
        raise ValueError(f"stored signatures of shape {np.shape(stored)} do not match a query of {R} x {M}")
    idx = np.arange(len(x), dtype=np.int64) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= len(x)):
        raise IndexError("rows out of range of the stored signatures")
    c, d = np.ascontiguousarray(q.real), np.ascontiguousarray(q.imag)
    n = len(idx)
    scores = np.empty(n, np.float32)
    rots = np.empty(n, np.float32)

    def block(s: int, e: int) -> None:
        P = np.empty((e - s, 2 * M), np.float32)
        signature_products(x, idx[s:e], c, d, P)
        # score(alpha_j) = Re sum_m P_m exp(i m alpha_j): a real inverse DFT of
        # the half spectrum X_m = P_m angles / 2 (single precision throughout)
        X = np.zeros((e - s, angles // 2 + 1), np.complex64)
        X[:, 1 : M + 1].real = P[:, :M] * np.float32(angles / 2)
        X[:, 1 : M + 1].imag = P[:, M:] * np.float32(angles / 2)
        S = fft.irfft(X, n=angles, axis=1, workers=1)
        j = S.argmax(axis=1)
        scores[s:e] = S[np.arange(e - s), j]
        rots[s:e] = ((j * (360.0 / angles)) + 180.0) % 360.0 - 180.0

    _chunked(block, n, chunk, workers)
    return scores, rots


def coarse_columns(rings: int, harmonics: int, coarse_harmonics: int) -> np.ndarray:
    """Columns of a signature vector (:func:`to_vector`) holding its first ``coarse_harmonics`` harmonics.

    The :func:`to_vector` layout cut to those harmonics: the real parts of
    ring after ring, each ring's harmonics in order, then the imaginary
    parts likewise. The layout the first pass of :func:`rotation_max_top`
    reads (harmonics innermost, so its loops run along contiguous codes).
    """
    half = rings * harmonics
    ring = (np.arange(rings)[:, None] * harmonics + np.arange(coarse_harmonics)[None, :]).ravel()
    return np.concatenate([ring, half + ring]).astype(np.int64)


@dataclass(frozen=True)
class CoarseSignatures:
    """The first harmonics of stored signatures in 8 bits: what the first pass of :func:`rotation_max_top` reads.

    Signature ``i`` is ``codes[i] * scale[i]``, in the :func:`coarse_columns`
    layout; each row is scaled to its largest magnitude (symmetric, 127
    steps), so a coefficient is off by at most half a step, 0.4 % of the
    row's largest. A quarter of the memory of float32, and a quarter of
    the bytes the first pass streams through for every query: that pass
    only chooses which signatures are scored exactly, on float32 vectors.

    Attributes
    ----------
    codes : ndarray (n, 2 R h), int8
    scale : ndarray (n,), float32
    """

    codes: np.ndarray
    scale: np.ndarray

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, rings: int, harmonics: int, coarse_harmonics: int = 0, *,
                     rows: np.ndarray | None = None, headroom: int = 0, workers: int = 1) -> "CoarseSignatures":
        """From signature vectors (:func:`to_vector`, ``(N, 2 rings harmonics)``), keeping the first ``coarse_harmonics``.

        ``coarse_harmonics`` = 0 means :data:`COARSE_HARMONICS` (at most
        ``harmonics``); ``rows`` takes only these rows, in this order. Read
        in place, so a large database is never copied in float32.
        ``headroom`` rows are allocated past the end of ``codes`` and
        ``scale`` (in their ``base``), for a caller that grows them in place;
        ``workers`` threads share the rows.
        """
        v = np.ascontiguousarray(vectors, dtype=np.float32)  # no copy when so already (the database's matrix)
        if v.ndim != 2 or v.shape[1] != 2 * rings * harmonics:
            raise ValueError(f"signature vectors of shape {v.shape} are not {rings} rings x {harmonics} harmonics")
        cols = coarse_columns(rings, harmonics, min(coarse_harmonics or COARSE_HARMONICS, harmonics))
        return cls._quantised(v, rows, cols, headroom, workers)

    @classmethod
    def from_coarse(cls, coarse: np.ndarray) -> "CoarseSignatures":
        """From float coarse signatures already in the :func:`coarse_columns` layout."""
        x = np.ascontiguousarray(coarse, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"coarse signatures must be a matrix, not of shape {x.shape}")
        return cls._quantised(x, None, np.arange(x.shape[1], dtype=np.int64))

    @classmethod
    def _quantised(cls, x: np.ndarray, rows: np.ndarray | None, cols: np.ndarray, headroom: int = 0,
                   workers: int = 1) -> "CoarseSignatures":
        """``x[rows][:, cols]`` (all rows by default) in 8 bits, one symmetric scale per row, by a Numba kernel.

        The kernel does a division and a rounding per value: compute-bound,
        so ``workers`` threads share the rows (1M rows of 384 of 512 values:
        0.46 s in one thread, 0.25 s in two, on this project's 2-core machine,
        against 0.94 and 0.50 s before its running maximum went 16 lanes
        wide; ``benchmarks/results/quantise.json``).
        """
        from ._kernels_nb import quantise_rows

        idx = np.arange(len(x), dtype=np.int64) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(x)):
            raise IndexError("rows out of range of the signature vectors")
        codes = np.empty((len(idx) + headroom, len(cols)), np.int8)[: len(idx)]
        scale = np.empty(len(idx) + headroom, np.float32)[: len(idx)]
        cols = np.ascontiguousarray(cols, dtype=np.int64)
        _chunked(lambda s, e: quantise_rows(x, idx[s:e], cols, codes[s:e], scale[s:e]), len(idx), 1 << 16, workers)
        return cls(codes, scale)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, rows) -> "CoarseSignatures":
        return CoarseSignatures(self.codes[rows], self.scale[rows])

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.scale.nbytes)

    def values(self) -> np.ndarray:
        """The signatures these codes stand for, as float32."""
        return self.codes.astype(np.float32) * self.scale[:, None]


def _first_pass(query: np.ndarray, coarse: CoarseSignatures, workers: int, chunk: int = 8192) -> np.ndarray:
    """Best score of each coarse signature over ``4 h`` rotations (``h`` harmonics).

    The score at rotation ``alpha`` is ``Re sum_m P_m exp(i m alpha)`` with
    ``P_m = sum_k q_km conj(d_km)`` (see :func:`rotation_max`): the ``h``
    products ``P_m`` per signature (``2 R`` multiply-adds each, a Numba
    kernel reading the 8-bit codes), then the rotations. Turning by half a
    turn keeps the even harmonics' part ``E`` and flips the odd ones' ``O``,
    so two small matrix products give ``E`` and ``O`` at the ``2 h``
    angles of a half turn and the best of the whole turn is
    ``max(E + |O|)``. Equal (to float32 rounding) to the inner products of
    each stored signature with the query rotated to every angle, for a
    twelfth of their multiply-adds (3,072 against 36,864 per signature at 8
    rings and 24 harmonics). The rotations come out transposed (a row per
    angle, a column per signature), so the maximum runs along contiguous
    rows. ``chunk``: signatures per block (each block's intermediate arrays
    take ~0.6 KB per signature; on this project's 2-core machine, 1M
    signatures in two threads took 135 ms in blocks of 8,192 and 153 ms in
    blocks of 2,048, whose more numerous Python calls contend for the
    interpreter lock; one thread 237 and 226 ms).
    """
    from ._kernels_nb import harmonic_products_q, row_max_half_turn

    q = np.asarray(query, dtype=np.complex64)
    R = q.shape[0]
    x = coarse.codes
    h = x.shape[1] // (2 * R)
    if x.ndim != 2 or x.shape[1] != 2 * R * h or not 0 < h <= q.shape[1]:
        raise ValueError(f"coarse signatures of shape {x.shape} do not hold whole harmonics of {R} rings")
    if x.dtype != np.int8 or coarse.scale.shape != (len(x),):
        raise ValueError("coarse signatures must be int8 codes with one scale per row")
    x = np.ascontiguousarray(x)  # what the kernel assumes (no copy when so already)
    sc = np.ascontiguousarray(coarse.scale, dtype=np.float32)
    c, d = q[:, :h].real, q[:, :h].imag  # (R, h)
    w = np.empty((2 * R, 2 * h), np.float32)  # part j (real parts of the rings, then imaginary) x harmonic
    w[:R, :h], w[R:, :h] = c, d  # Re q conj(x) = c a + d b
    w[:R, h:], w[R:, h:] = d, -c  # Im q conj(x) = d a - c b
    no, ne = (h + 1) // 2, h // 2
    m = np.arange(h)  # harmonic m + 1: odd harmonics at even m
    pos = np.where(m % 2 == 0, m // 2, 2 * no + m // 2)  # real parts: odd harmonics' rows, then even ones'
    pos = np.concatenate([pos, pos + np.where(m % 2 == 0, no, ne)]).astype(np.int64)  # imaginary parts after each
    ang = np.arange(2 * h) * (2 * np.pi / (4 * h))  # half a turn of the 4 h angles

    def rotations(m: np.ndarray) -> np.ndarray:  # (angles, 2 len(m)): applied to [Re P; Im P] of those harmonics
        mh = np.outer(ang, m)
        return np.ascontiguousarray(np.concatenate([np.cos(mh), -np.sin(mh)], axis=1), dtype=np.float32)

    T_odd, T_even = rotations(np.arange(1, h + 1, 2)), rotations(np.arange(2, h + 1, 2))
    n = len(x)
    scores = np.empty(n, np.float32)

    def block(s: int, e: int) -> None:
        P = np.empty((e - s, 2 * h), np.float32)
        harmonic_products_q(x[s:e], sc[s:e], w, pos, P)
        row_max_half_turn(T_odd @ P[:, : 2 * no].T, T_even @ P[:, 2 * no :].T, scores[s:e])

    _chunked(block, n, chunk, workers)
    return scores


#: Harmonics of the first pass of :func:`rotation_max_top` (at 4 rotations per
#: harmonic). On 10,000 firearms x 2 synthetic cartridge cases through the
#: real pipeline, the share of true mates ranked in the best 0.3 % by the first
#: pass was 0.59 with 12 harmonics, 0.77 with 16, 0.91 with 20, 0.97 with 24
#: and 0.99 with all 32 (``benchmarks/results/scale.json`` for the search).
COARSE_HARMONICS = 24
#: Up to this many stored signatures every one is scored exactly (one pass).
EXACT_SIGNATURES = 25_000
#: The first pass of :func:`rotation_max_top` hands at least this many
#: signatures to the exact score. With 3,000 (the earlier ``10 k``), 1 % of
#: the synthetic planted mates at 100,000 and 1,000,000 exhibits were lost
#: to the first pass; with 10,000 none were, as with the exact search, for
#: no measurable cost at 1M (the first pass dominates) and ~16 ms at 100k.
SECOND_PASS_MIN = 10_000


def rotation_max_top(query: np.ndarray, stored: np.ndarray, k: int, *,
                     coarse: "CoarseSignatures | np.ndarray | None" = None,
                     coarse_harmonics: int = COARSE_HARMONICS, keep: int | None = None,
                     rows: np.ndarray | None = None,
                     exact_limit: int = EXACT_SIGNATURES, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``k`` stored signatures that best match the query at any rotation.

    Up to ``exact_limit`` stored signatures, every one is scored by
    :func:`rotation_max`. Above, two passes over all stored signatures, both
    exact for what they compute:

    1. every signature is scored on its first ``coarse_harmonics``
       harmonics, stored in 8 bits (:class:`CoarseSignatures`), at
       ``4 * coarse_harmonics`` rotations (per-harmonic products, then the
       rotations: :func:`_first_pass`);
    2. the best ``keep`` (default: the larger of ``10 k`` and
       :data:`SECOND_PASS_MIN`) are scored on all
       harmonics by :func:`rotation_max`.

    Parameters
    ----------
    query : ndarray (rings, harmonics), complex
    stored : ndarray (n, 2 * rings * harmonics), float32
        Signatures as real vectors (:func:`to_vector`).
    k : int
    coarse : CoarseSignatures, optional
        ``CoarseSignatures.from_vectors(stored)`` (of ``stored[rows]`` with
        ``rows``), when kept between searches; made here when not given. A
        float array in the :func:`coarse_columns` layout is quantised here,
        at each call.
    rows : ndarray (n,) int, optional
        Search only these rows of ``stored`` (``coarse`` then holds just
        their coarse columns, in this order); indices returned are into
        ``rows``. Spares copying a large ``stored``.
    workers : int
        Threads sharing both passes (chunks of stored signatures).

    Returns
    -------
    index : ndarray (k,) int64, best first
    score : ndarray (k,) float32
    """
    q = np.asarray(query, dtype=np.complex64)
    R, M = q.shape
    n = stored.shape[0] if rows is None else len(rows)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    if stored.shape[1] != 2 * R * M:
        raise ValueError(f"stored signatures have {stored.shape[1]} values, expected {2 * R * M}")
    if n <= exact_limit:
        exact, _ = rotation_max(q, stored, rows=rows, workers=workers)
        order = np.argsort(-exact)[:k]
        return order.astype(np.int64), exact[order]
    if coarse is None:
        coarse = CoarseSignatures.from_vectors(stored, R, M, coarse_harmonics, rows=rows)
    elif not isinstance(coarse, CoarseSignatures):
        coarse = CoarseSignatures.from_coarse(coarse)
    if len(coarse) != n:
        raise ValueError(f"{len(coarse)} coarse signatures for {n} stored ones")
    scores = _first_pass(q, coarse, workers)
    keep = min(n, keep or max(10 * k, SECOND_PASS_MIN))
    cand = np.sort(np.argpartition(-scores, keep - 1)[:keep]) if keep < n else np.arange(n)
    exact, _ = rotation_max(q, stored, rows=cand if rows is None else np.asarray(rows)[cand], workers=workers)
    order = np.argsort(-exact)[:k]
    return cand[order].astype(np.int64), exact[order]
