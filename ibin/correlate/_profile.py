"""Profile comparison: land-to-land cross-correlation and bullet-to-bullet phase.

Two land signatures (1-D profiles in µm, see :mod:`ibin.features`) of the
same barrel land are the same striae seen through two grooves cut at
slightly different places, so they match after a lateral shift that is not
known in advance. The land score is the largest Pearson correlation over
all shifts that keep enough of the two profiles overlapping (the "CCF" of
Hare, Hofmann & Carriquiry 2017; the cross-correlation maximum of Vorburger
et al. and of Sensofar's SensoMATCH). Missing points are left out of each
correlation.

Speed: the profiles are packed once (:class:`ProfileSet`); a Numba kernel
scores every lag on a copy averaged over ``coarse_factor`` samples, then
refines the strongest coarse peaks at full resolution. An exhaustive search
(``coarse_factor=1``) gives the same maximum on real lands (see
``benchmarks/hamby44.py``) and is kept for checking.

A bullet is compared with another through all its lands: the land matrix
``ccf[i, j]`` (land ``i`` of A against land ``j`` of B). Lands follow each
other round the bullet in the same order on every bullet the barrel fired,
but which land was scanned first is arbitrary, so the lands of A pair with
those of B at some cyclic offset, the **phase** ``k``: land ``i`` of A with
land ``(i + k) mod p`` of B. The bullet score is the largest, over ``k``, of
the mean land score along that wrapped diagonal, the "sequence average
maximum" (SAM; Vanderplas et al. 2020; bulletxtrctr
``compute_average_scores``). A land that was not scanned counts zero in
its phase's mean, so a missing land lowers the score of the right phase by
about one ``p``-th without breaking it. A fragment (an exhibit with a single
land) has no phase to speak of: its score is its best land match.

References
----------
E. Hare, H. Hofmann, A. Carriquiry, "Automatic matching of bullet land
impressions", Annals of Applied Statistics, 2017. doi:10.1214/17-AOAS1080

S. Vanderplas, M. Nally, T. Klep, C. Cadevall, H. Hofmann, "Comparison of
three similarity scores for bullet LEA matching", Forensic Science
International 308:110167, 2020. doi:10.1016/j.forsciint.2020.110167

L. S. Chumbley, M. D. Morris, M. J. Kreiser et al., "Validation of tool mark
comparisons obtained using a quantitative, comparative, statistical
algorithm", Journal of Forensic Sciences 55(4):953-961, 2010.

A. Biasotti, "A statistical study of the individual characteristics of
fired bullets", Journal of Forensic Sciences 4(1):34-50, 1959 (consecutive
matching striae).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = [
    "ProfileParams",
    "ProfileSet",
    "LandComparison",
    "LandPair",
    "BulletComparison",
    "compare_profiles",
    "ccf_matrix",
    "striae_features",
    "phase_scores",
    "compare_bullets",
]


@dataclass(frozen=True)
class ProfileParams:
    """Settings of land comparison; lengths in µm.

    Attributes
    ----------
    min_overlap : float
        Share of the shorter profile's measured points that must overlap at
        a lag (75 %, bulletxtrctr ``sig_align``), so a short chance match at
        the ends cannot win.
    min_overlap_um : float
        And at least this length of measured overlap (350 µm, the NFI's
        profile correlator ``min_overlap_distance``), which matters for
        fragments.
    coarse_factor : int
        Samples averaged per coarse sample in the lag search (1 = exhaustive
        search at full resolution).
    coarse_peaks : int
        Coarse correlation peaks refined at full resolution.
    striae_smooth_um : float
        Moving-average window applied twice before striae (peaks and
        valleys) are located for the CMS features: 25 samples at 1.5625 µm
        in Hare et al. (2017).
    """

    min_overlap: float = 0.75
    min_overlap_um: float = 350.0
    coarse_factor: int = 4
    coarse_peaks: int = 3
    striae_smooth_um: float = 39.0

    def __post_init__(self) -> None:
        if not 0 < self.min_overlap <= 1:
            raise ValueError("min_overlap must be in (0, 1]")
        if self.min_overlap_um < 0:
            raise ValueError("min_overlap_um must not be negative")
        if not (isinstance(self.coarse_factor, int) and self.coarse_factor >= 1):
            raise ValueError("coarse_factor must be a positive integer")
        if not (isinstance(self.coarse_peaks, int) and self.coarse_peaks >= 1):
            raise ValueError("coarse_peaks must be a positive integer")


# --------------------------------------------------------------------------- packing


class ProfileSet:
    """Profiles packed for the comparison kernel (built once, compared many times).

    Parameters
    ----------
    profiles : sequence of ndarray or None
        1-D profiles in µm (NaN = missing); ``None`` for a missing land,
        which keeps its position but is never compared.
    pixel_um : float
        Common spacing of the profiles.
    coarse_factor : int
        Samples per coarse sample.
    """

    def __init__(self, profiles: Sequence[np.ndarray | None], pixel_um: float, *, coarse_factor: int = 4):
        if not (math.isfinite(pixel_um) and pixel_um > 0):
            raise ValueError(f"pixel_um must be positive, got {pixel_um!r}")
        if coarse_factor < 1:
            raise ValueError("coarse_factor must be at least 1")
        self.pixel_um = float(pixel_um)
        self.coarse_factor = int(coarse_factor)
        n = len(profiles)
        self.present = np.array([p is not None for p in profiles], dtype=bool)
        fine = []
        coarse = []
        for p in profiles:
            if p is None:
                fine.append(np.zeros(0))
                coarse.append(np.zeros(0))
                continue
            a = np.asarray(p, dtype=np.float64)
            if a.ndim != 1:
                raise ValueError(f"a profile must be 1-D, got shape {a.shape}")
            fine.append(a)
            coarse.append(_block_mean(a, self.coarse_factor))
        self.lengths = np.array([len(a) for a in fine], dtype=np.int64)
        self.fv, self.fw, self.f2, self.foff = _pack(fine)
        self.cv, self.cw, self.c2, self.coff = _pack(coarse)
        self.clen = np.array([len(a) for a in coarse], dtype=np.int64)
        self.counts = np.array([float(np.isfinite(a).sum()) for a in fine], dtype=np.float64)
        self.present &= self.counts >= 3
        self._profiles = [None if p is None else np.asarray(p, dtype=np.float64) for p in profiles]
        self.n = n

    def __len__(self) -> int:
        return self.n

    def profile(self, i: int) -> np.ndarray | None:
        return self._profiles[i]


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean over blocks of ``f`` samples (NaN when fewer than half were measured)."""
    if f == 1:
        return a.copy()
    n = len(a) // f
    if n == 0:
        return np.full(1, np.nanmean(a) if np.isfinite(a).any() else np.nan)
    blk = a[: n * f].reshape(n, f)
    m = np.isfinite(blk)
    cnt = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(m, blk, 0.0).sum(axis=1) / cnt
    out[cnt * 2 < f] = np.nan
    return out


def _pack(arrays: list[np.ndarray]):
    lens = [len(a) for a in arrays]
    off = np.zeros(len(arrays), dtype=np.int64)
    if arrays:
        off[1:] = np.cumsum(lens)[:-1]
    cat = np.concatenate(arrays) if arrays and sum(lens) else np.zeros(1)
    w = np.isfinite(cat).astype(np.float64)
    v = np.where(w > 0, cat, 0.0)
    return np.ascontiguousarray(v), np.ascontiguousarray(w), np.ascontiguousarray(v * v), off


# --------------------------------------------------------------------------- lands


@dataclass(frozen=True)
class LandComparison:
    """Two land profiles at their best lag.

    Attributes
    ----------
    ccf : float
        Largest Pearson correlation over lags (NaN when no lag overlaps
        enough).
    lag_um : float
        The lag: position ``t`` of ``b`` matches position ``t + lag_um`` of
        ``a`` (both measured from each profile's first sample).
    overlap_um : float
        Length of jointly measured profile at that lag.
    """

    ccf: float
    lag_um: float
    overlap_um: float


def ccf_matrix(a: ProfileSet, b: ProfileSet, params: ProfileParams | None = None,
               pairs: Sequence[tuple[int, int]] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CCF maxima of every profile of ``a`` against every profile of ``b``.

    Parameters
    ----------
    a, b : ProfileSet
        Packed with the same spacing and coarse factor.
    params : ProfileParams, optional
    pairs : sequence of (i, j), optional
        Only these pairs (the others stay NaN).

    Returns
    -------
    ccf : ndarray (len(a), len(b))
        NaN where a profile is missing or no lag overlaps enough.
    lag_um : ndarray (len(a), len(b))
        Lag of each maximum (see :class:`LandComparison`).
    overlap_um : ndarray (len(a), len(b))
    """
    from ._kernels_nb import profile_ccf_pairs

    p = params or ProfileParams()
    if not math.isclose(a.pixel_um, b.pixel_um, rel_tol=1e-9):
        raise ValueError(f"profiles at different spacings ({a.pixel_um} and {b.pixel_um} µm) cannot be compared")
    if a.coarse_factor != b.coarse_factor:
        raise ValueError("profile sets packed with different coarse factors")
    if pairs is None:
        ia, ib = np.nonzero(a.present[:, None] & b.present[None, :])
    else:
        pl = [(i, j) for i, j in pairs if a.present[i] and b.present[j]]
        ia = np.array([i for i, _ in pl], dtype=np.int64)
        ib = np.array([j for _, j in pl], dtype=np.int64)
    ccf = np.full((len(a), len(b)), np.nan)
    lag = np.full((len(a), len(b)), np.nan)
    ov = np.full((len(a), len(b)), np.nan)
    if len(ia) == 0:
        return ccf, lag, ov
    # pack b after a so that one kernel call serves all pairs
    fv = np.concatenate([a.fv, b.fv])
    fw = np.concatenate([a.fw, b.fw])
    f2 = np.concatenate([a.f2, b.f2])
    cv = np.concatenate([a.cv, b.cv])
    cw = np.concatenate([a.cw, b.cw])
    c2 = np.concatenate([a.c2, b.c2])
    foff = np.concatenate([a.foff, b.foff + len(a.fv)])
    coff = np.concatenate([a.coff, b.coff + len(a.cv)])
    flen = np.concatenate([a.lengths, b.lengths])
    clen = np.concatenate([a.clen, b.clen])
    fcnt = np.concatenate([a.counts, b.counts])
    n = len(ia)
    out_r = np.empty(n)
    out_lag = np.empty(n, dtype=np.int64)
    out_n = np.empty(n)
    profile_ccf_pairs(fv, fw, f2, foff, flen, fcnt, cv, cw, c2, coff, clen,
                      np.ascontiguousarray(ia, dtype=np.int64), np.ascontiguousarray(ib + len(a), dtype=np.int64),
                      a.coarse_factor, float(p.min_overlap), float(p.min_overlap_um / a.pixel_um), int(p.coarse_peaks),
                      out_r, out_lag, out_n)
    ok = out_r > -1.5
    ccf[ia[ok], ib[ok]] = out_r[ok]
    lag[ia[ok], ib[ok]] = out_lag[ok] * a.pixel_um
    ov[ia[ok], ib[ok]] = out_n[ok] * a.pixel_um
    return ccf, lag, ov


def compare_profiles(a: np.ndarray, b: np.ndarray, pixel_um: float, params: ProfileParams | None = None) -> LandComparison:
    """Cross-correlation maximum of two land profiles (NaN-aware).

    Parameters
    ----------
    a, b : ndarray (n,)
        Profiles in µm on the same spacing; NaN = missing.
    pixel_um : float
        Their spacing.
    params : ProfileParams, optional

    Returns
    -------
    LandComparison
        ``ccf`` is NaN when no lag overlaps enough.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.convolve(rng.normal(size=1400), np.ones(5) / 5, "same")
    >>> r = compare_profiles(x[100:1300], x[130:1330], 1.5)
    >>> round(r.ccf, 3), r.lag_um
    (1.0, 45.0)
    """
    p = params or ProfileParams()
    sa = ProfileSet([a], pixel_um, coarse_factor=p.coarse_factor)
    sb = ProfileSet([b], pixel_um, coarse_factor=p.coarse_factor)
    c, l, o = ccf_matrix(sa, sb, p)
    return LandComparison(float(c[0, 0]), float(l[0, 0]), float(o[0, 0]))


# --------------------------------------------------------------------------- striae features


def _fill_nan(x: np.ndarray) -> np.ndarray:
    m = np.isfinite(x)
    if m.all() or not m.any():
        return np.where(m, x, 0.0)
    idx = np.arange(len(x))
    return np.interp(idx, idx[m], x[m])


def _extrema(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and types (+1 peak, -1 valley) of the extrema of a twice-smoothed profile."""
    from scipy.ndimage import uniform_filter1d

    s = _fill_nan(x)
    if window > 1:
        s = uniform_filter1d(uniform_filter1d(s, window, mode="nearest"), window, mode="nearest")
    if len(s) < 3:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    mid = s[1:-1]
    peak = (mid > s[:-2]) & (mid >= s[2:])
    valley = (mid < s[:-2]) & (mid <= s[2:])
    pos = np.flatnonzero(peak | valley) + 1
    typ = np.where(peak[pos - 1], 1, -1)
    return pos, typ


def striae_features(a: np.ndarray, b: np.ndarray, lag_um: float, pixel_um: float,
                    params: ProfileParams | None = None) -> dict:
    """Striae-level features of two aligned land profiles (Hare et al. 2017).

    The profiles are aligned at ``lag_um`` (see :class:`LandComparison`) and
    cut to their overlap. In each, peaks and valleys of the profile smoothed
    twice by a ``striae_smooth_um`` moving average are the striae; each
    stria owns the interval reaching a third of the way to its neighbours.
    Intervals of both profiles that overlap form a group; a group holding
    striae of both profiles, all peaks or all valleys, is a *match*, any
    other group a *mismatch*.

    Returns
    -------
    dict
        ``matches`` and ``mismatches`` (counts), ``cms`` (consecutive
        matching striae: longest run of matches), ``cnms`` (longest run of
        mismatches), ``sum_peaks_um`` (sum of the absolute mean heights of
        matched striae), ``d_um`` (root mean square difference of the
        aligned profiles), ``overlap_um``; per mm of overlap:
        ``matches_per_mm``, ``mismatches_per_mm``, ``cms_per_mm``.

    References
    ----------
    A. Biasotti (1959), J. Forensic Sci. 4(1):34-50 (consecutive matching
    striae); E. Hare et al. (2017), doi:10.1214/17-AOAS1080 (CMS, matches,
    non-matches, D on digitised signatures).
    """
    p = params or ProfileParams()
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    lag = int(round(lag_um / pixel_um))
    i0 = max(0, lag)
    i1 = min(len(a), len(b) + lag)
    empty = {"matches": 0, "mismatches": 0, "cms": 0, "cnms": 0, "sum_peaks_um": 0.0, "d_um": float("nan"),
             "overlap_um": 0.0, "matches_per_mm": 0.0, "mismatches_per_mm": 0.0, "cms_per_mm": 0.0}
    if i1 - i0 < 3:
        return empty
    sa = a[i0:i1]
    sb = b[i0 - lag : i1 - lag]
    both = np.isfinite(sa) & np.isfinite(sb)
    if both.sum() < 3:
        return empty
    d_um = float(np.sqrt(np.mean((sa[both] - sb[both]) ** 2)))
    overlap_um = float(both.sum() * pixel_um)
    w = max(1, int(round(p.striae_smooth_um / pixel_um)))
    intervals = []  # (start, end, type, height, which)
    for which, s in enumerate((sa, sb)):
        pos, typ = _extrema(s, w)
        for k, (q, t) in enumerate(zip(pos, typ)):
            left = pos[k - 1] if k > 0 else 0
            right = pos[k + 1] if k + 1 < len(pos) else len(s) - 1
            lo = q - (q - left) / 3.0
            hi = q + (right - q) / 3.0
            h = s[q]
            intervals.append((lo, hi, int(t), float(h) if np.isfinite(h) else 0.0, which))
    if not intervals:
        return dict(empty, d_um=d_um, overlap_um=overlap_um)
    intervals.sort(key=lambda r: r[0])
    groups = []
    cur = [intervals[0]]
    end = intervals[0][1]
    for r in intervals[1:]:
        if r[0] <= end:
            cur.append(r)
            end = max(end, r[1])
        else:
            groups.append(cur)
            cur = [r]
            end = r[1]
    groups.append(cur)
    flags = []
    sum_peaks = 0.0
    for g in groups:
        owners = {r[4] for r in g}
        types = {r[2] for r in g}
        match = len(owners) == 2 and len(types) == 1
        flags.append(match)
        if match:
            sum_peaks += abs(float(np.mean([r[3] for r in g])))
    matches = int(sum(flags))
    mismatches = len(flags) - matches
    cms = cnms = run_m = run_n = 0
    for f in flags:
        run_m = run_m + 1 if f else 0
        run_n = 0 if f else run_n + 1
        cms = max(cms, run_m)
        cnms = max(cnms, run_n)
    per_mm = 1000.0 / overlap_um if overlap_um > 0 else 0.0
    return {"matches": matches, "mismatches": mismatches, "cms": cms, "cnms": cnms,
            "sum_peaks_um": round(sum_peaks, 4), "d_um": d_um, "overlap_um": overlap_um,
            "matches_per_mm": matches * per_mm, "mismatches_per_mm": mismatches * per_mm, "cms_per_mm": cms * per_mm}


# --------------------------------------------------------------------------- bullets


def phase_scores(ccf: np.ndarray, *, fragment: bool = False) -> np.ndarray:
    """Mean land score along each wrapped diagonal of a square land matrix.

    ``ccf[i, j]`` scores land ``i`` of A against land ``j`` of B (NaN =
    missing). Phase ``k`` pairs land ``i`` with land ``(i + k) mod p``;
    its score is the sum of its land scores over ``p`` (a missing
    comparison counts zero, bulletxtrctr ``compute_average_scores`` with
    ``addNA = FALSE``), or, for a fragment (a side with one land, so one pair
    per phase), that pair's score.
    """
    m = np.asarray(ccf, dtype=np.float64)
    p = m.shape[0]
    if m.shape != (p, p):
        raise ValueError(f"the land matrix must be square, got {m.shape}")
    i = np.arange(p)
    out = np.empty(p)
    for k in range(p):
        d = m[i, (i + k) % p]
        s = float(np.nansum(d))
        out[k] = s if fragment else s / p
        if fragment and not np.isfinite(d).any():
            out[k] = np.nan
    return out


@dataclass(frozen=True)
class LandPair:
    """One land of A against the land of B its phase pairs it with (1-based land numbers)."""

    query_land: int
    lead_land: int
    ccf: float
    lag_um: float
    overlap_um: float
    features: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"query_land": self.query_land, "lead_land": self.lead_land,
             "ccf": None if not math.isfinite(self.ccf) else round(self.ccf, 4),
             "lag_um": None if not math.isfinite(self.lag_um) else round(self.lag_um, 2),
             "overlap_um": None if not math.isfinite(self.overlap_um) else round(self.overlap_um, 1)}
        for k, v in self.features.items():
            if k in ("overlap_um",):
                continue
            d[k] = round(v, 4) if isinstance(v, float) and math.isfinite(v) else (None if isinstance(v, float) else v)
        return d


@dataclass(frozen=True)
class BulletComparison:
    """Bullet A against bullet B through their lands.

    Attributes
    ----------
    score : float
        Sequence average maximum: the best phase's mean land CCF (missing
        comparisons count zero); for a fragment, the best land CCF. NaN when
        no land pair could be compared.
    phase : int
        Land ``i`` of A pairs with land ``(i + phase) mod n_positions`` of B
        (0-based positions; with 1-based land numbers the same offset).
    phase_scores : ndarray (n_positions,)
        Score of every phase.
    ccf, lag_um, overlap_um : ndarray (n_positions, n_positions)
        Land matrix (rows: lands of A, columns: lands of B; NaN = missing).
    lands : tuple of LandPair
        The land pairs of the best phase that were compared, with their
        striae features.
    n_positions : int
        Land positions compared (the larger bullet's count).
    fragment : bool
        True when one side holds a single land.
    """

    score: float
    phase: int
    phase_scores: np.ndarray
    ccf: np.ndarray
    lag_um: np.ndarray
    overlap_um: np.ndarray
    lands: tuple[LandPair, ...]
    n_positions: int
    fragment: bool

    @property
    def phase_margin(self) -> float:
        """Best phase score minus the second best (how clearly the phase stands out)."""
        s = np.sort(self.phase_scores[np.isfinite(self.phase_scores)])[::-1]
        return float(s[0] - s[1]) if len(s) >= 2 else float("nan")

    def to_dict(self) -> dict:
        def mat(m):
            return [[None if not math.isfinite(v) else round(float(v), 4) for v in row] for row in m]

        return {
            "score": None if not math.isfinite(self.score) else round(self.score, 4),
            "phase": self.phase,
            "phase_scores": [None if not math.isfinite(v) else round(float(v), 4) for v in self.phase_scores],
            "phase_margin": None if not math.isfinite(self.phase_margin) else round(self.phase_margin, 4),
            "fragment": self.fragment,
            "lands": [l.to_dict() for l in self.lands],
            "ccf_matrix": mat(self.ccf),
            "lag_um_matrix": [[None if not math.isfinite(v) else round(float(v), 2) for v in row] for row in self.lag_um],
        }


def _pad(m: np.ndarray, p: int) -> np.ndarray:
    out = np.full((p, p), np.nan)
    out[: m.shape[0], : m.shape[1]] = m
    return out


def compare_bullets(a: ProfileSet, b: ProfileSet, params: ProfileParams | None = None, *,
                    features: bool = True) -> BulletComparison:
    """Compare two bullets land by land and find their phase.

    Parameters
    ----------
    a, b : ProfileSet
        The bullets' land signatures in land order (``None`` = missing land),
        e.g. from ``ProfileSet([l.signature if l else None for l in prep.lands], prep.pixel_um)``.
    params : ProfileParams, optional
    features : bool
        Compute the striae features of the best phase's land pairs.

    Returns
    -------
    BulletComparison

    References
    ----------
    Hare et al. (2017), doi:10.1214/17-AOAS1080; Vanderplas et al. (2020),
    doi:10.1016/j.forsciint.2020.110167 (sequence average maximum).
    """
    p_ = params or ProfileParams()
    ccf, lag, ov = ccf_matrix(a, b, p_)
    p = max(len(a), len(b))
    ccf, lag, ov = _pad(ccf, p), _pad(lag, p), _pad(ov, p)
    fragment = min(int(a.present.sum()), int(b.present.sum())) <= 1
    ps = phase_scores(ccf, fragment=fragment)
    if not np.isfinite(ccf).any():
        return BulletComparison(float("nan"), 0, ps, ccf, lag, ov, (), p, fragment)
    k = int(np.nanargmax(np.where(np.isfinite(ps), ps, -np.inf)))
    lands = []
    for i in range(p):
        j = (i + k) % p
        if not math.isfinite(ccf[i, j]):
            continue
        feats = {}
        if features:
            feats = striae_features(a.profile(i), b.profile(j), float(lag[i, j]), a.pixel_um, p_)
        lands.append(LandPair(i + 1, j + 1, float(ccf[i, j]), float(lag[i, j]), float(ov[i, j]), feats))
    return BulletComparison(float(ps[k]), k, ps, ccf, lag, ov, tuple(lands), p, fragment)
