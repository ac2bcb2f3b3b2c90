"""Synthetic cartridge-case breech-face scans (and bullet land scans) with known ground truth.

Bullets: :func:`bullet_lands` draws the land-engraved-area scans of a fired
bullet (see the section at the end of this module).

Unit tests and scale benchmarks need many scans whose source is known: which
firearm fired each cartridge, and how its breech-face marks were rotated and
shifted on the way into the scan. This module draws such scans, fast enough
for populations of tens of thousands, and realistic enough that a naive
comparison does not score perfectly.

The model, in physical units (lateral µm, heights µm):

* **Firearm** (one integer seed): a breech-face height pattern made of an
  isotropic granular texture (exponential correlation, lengths 30-200 µm)
  and one or two sets of roughly parallel tool marks (straight filing marks
  or milling arcs) with a firearm-specific direction, spacing (50-300 µm),
  waviness and random groove amplitudes; band-passed like the scans
  (ISO 16610-21 Gaussian, 16-700 µm) and scaled to 1 µm RMS. The firearm
  also fixes its firing-pin aperture (radius 0.5-1.0 mm, centre up to
  0.3 mm off the breech-face centre) and its firing-pin tip (crater radius
  0.4-0.9 mm, depth 100-300 µm).
* **Shot** (a second seed): the pattern rotated and shifted, multiplied by a
  partial-contact map (a smooth random field thresholded so that a
  difficulty-dependent share of the primer, 0-40 %, keeps only a weak
  imprint), plus shot-specific texture whose amplitude grows with
  difficulty, instrument noise and dropouts (NaN).
* **Processed scan** (default), like the CSAFE-processed Fadul et al. (2011)
  files: breech-face annulus only, levelled, band-passed, on a square grid
  slightly smaller than the primer.
* **Raw scan** (``raw=True``), like an unprocessed confocal scan of the case
  head: tilted and curved form, primer at its own height, a deep gap ring,
  a firing-pin crater, spikes and NaN dropouts on steep walls.
* **A real processed scan made raw** (:func:`raw_case_head`): a processed
  breech face (a Fadul file) put back into such a case head, its marks real.

Geometry of the ground truth
----------------------------
A scan grid has ``n`` points per side; its point ``(row i, column j)`` lies
at ``X = (j - (n - 1) / 2) * pixel_um``, ``Y = (i - (n - 1) / 2) * pixel_um``
from the grid centre (x along columns, y along rows, rows down). A point
``u`` of the firearm's pattern (in the frame of :func:`firearm_pattern`,
origin at the breech-face centre) appears in the scan at::

    (X, Y) = R(rotation_deg) @ u + (shift_x_um, shift_y_um)
    R(a) = [[cos a, sin a], [-sin a, cos a]]

that is, rotated **about the grid centre**, counter-clockwise as displayed
with row 0 at the top (the convention of OpenCV's ``getRotationMatrix2D``
and of ``ibin.correlate``), then translated. The primer centre sits within
50 µm per axis of the grid centre; rotating about the primer centre instead
of the grid centre differs from the truth by a pure translation of at most
about 140 µm.

Every random quantity depends only on the seeds and on physical positions,
not on the pixel size or the grid size: the same ``(firearm, shot)`` drawn
at two pixel sizes shows the same surface (correlation > 0.99 after
resampling), and a processed scan is, up to noise, the band-passed breech
face of the raw scan with the same seeds.

Calibration
-----------
Against the 40 Fadul files (6.25 µm/px): processed heights 1.0, 1.2 and
2.1 µm RMS at difficulty 0, 0.5 and 1 (Fadul 1.2-1.9); autocorrelation 0.5
at about 45 µm and near 0 beyond 150 µm (Fadul alike). The normalised correlation of two shots of one
firearm, each mapped back by its truth, is about 0.92 at difficulty 0, 0.47
at 0.5 and 0.1 at 1 (different firearms: 0 +- 0.05). Fadul's geometry is
not copied: its masked firing-pin hole is larger (radius about 1.3 mm) and
its breech-face annulus narrower than the defaults here.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterator

import cv2
import numpy as np
from scipy import fft as sfft

from .errors import ScanError
from .scan import Scan

__all__ = ["CartridgeTruth", "cartridge_case", "cartridge_population", "firearm_pattern", "raw_case_head",
           "BulletTruth", "bullet_lands", "land_pattern"]

# --------------------------------------------------------------------------- constants

#: Pixel sizes (µm) the generator accepts.
PIXEL_UM_RANGE = (1.0, 25.0)
#: Largest translation (µm, per axis) accepted in ``shift_um``; the cached
#: firearm pattern extends this far (plus the primer-centre offset) beyond the primer.
MAX_SHIFT_UM = 300.0
#: Random translations are drawn uniformly within +-this (µm, per axis).
RANDOM_SHIFT_UM = 150.0
#: The primer centre lies within +-this (µm, per axis) of the grid centre.
PRIMER_OFFSET_UM = 50.0
#: Largest grid accepted (points per side).
MAX_SIDE_PX = 12_000

_ISO_ALPHA = math.sqrt(math.log(2.0) / math.pi)
# Band-pass of processed scans (ISO 16610-21 Gaussian). The long cut-off makes the
# autocorrelation of processed scans match the Fadul files (half at ~50 µm, ~0.1 at 100 µm).
_SHORT_CUTOFF_UM = 16.0
_LONG_CUTOFF_UM = 700.0
_PATTERN_MARGIN_UM = MAX_SHIFT_UM * math.sqrt(2.0) + PRIMER_OFFSET_UM * math.sqrt(2.0) + 20.0
_SHOT_TEXTURE_LENGTHS_UM = (45.0, 130.0)  # exponential correlation lengths of the shot's own texture
_LATTICE_UM = 20.0  # spacing of the random impulses that build the shot textures
_WEAK_IMPRINT = 0.12  # imprint weight where the primer did not touch the breech face
_PROCESSED_NOISE_UM = 0.03
_RAW_NOISE_UM = 0.05

# Seed-sequence domain tags, so firearm, shot and mark streams never coincide.
_TAG_FIREARM = 0x5F1E
_TAG_MARKS = 0x3A2C
_TAG_SHOT = 0x5407


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class CartridgeTruth:
    """Ground truth of one synthetic cartridge-case scan.

    Attributes
    ----------
    firearm : int
        Firearm seed: scans with the same value come from the same firearm.
    shot : int
        Shot seed.
    rotation_deg : float
        Rotation (degrees, in ``[0, 360)``) applied to the firearm's
        breech-face pattern about the grid centre, counter-clockwise as
        displayed with row 0 at the top (see the module documentation for
        the exact mapping).
    shift_x_um, shift_y_um : float
        Translation (µm) applied after the rotation, along columns and rows:
        the pattern's origin lies this far from the grid centre.
    difficulty : float
        Difficulty in ``[0, 1]`` the scan was drawn with.
    """

    firearm: int
    shot: int
    rotation_deg: float
    shift_x_um: float
    shift_y_um: float
    difficulty: float


def cartridge_case(
    firearm: int,
    shot: int,
    *,
    difficulty: float = 0.5,
    pixel_um: float = 6.25,
    raw: bool = False,
    rotation_deg: float | None = None,
    shift_um: tuple[float, float] | None = None,
    primer_radius_um: float = 2200.0,
    size_um: float | None = None,
) -> tuple[Scan, CartridgeTruth]:
    """Draw one synthetic breech-face scan of a fired cartridge case.

    Parameters
    ----------
    firearm : int
        Firearm seed (non-negative). Same seed, same breech face.
    shot : int
        Shot seed (non-negative): the cartridge's own texture, contact,
        position and defects.
    difficulty : float
        From 0 (full contact, little shot texture: same-firearm correlation
        about 0.9 once aligned by the truth) through 0.5 (about 0.47; Fadul
        pairs give 0.55-0.84 after a full alignment search) to 1 (40 % of
        the primer weakly imprinted, strong shot texture: about 0.1).
    pixel_um : float
        Grid spacing in µm, in ``[1, 25]``. Physical scales do not depend on it.
    raw : bool
        False: a processed scan (breech-face annulus, levelled, band-passed,
        NaN elsewhere). True: an unprocessed scan of the case head (form,
        primer, gap ring, firing-pin crater, spikes, dropouts).
    rotation_deg : float, optional
        Rotation of the firearm's pattern (degrees, counter-clockwise as
        displayed, about the grid centre). Drawn uniformly in ``[0, 360)``
        from the shot seed when omitted.
    shift_um : (float, float), optional
        Translation ``(x, y)`` in µm applied after the rotation, each within
        +-300 µm. Drawn uniformly within +-150 µm per axis when omitted.
    primer_radius_um : float
        Radius of the primer, 1.5-10 mm (2.2 mm: small pistol primer, 9 mm Luger).
    size_um : float, optional
        Side of the square grid in µm; the grid has
        ``round(size_um / pixel_um)`` points per side (16 to 12 000).
        Default ``1.6 * primer_radius_um`` for a processed scan (the primer
        circle clipped at the sides) and ``2.6 * primer_radius_um`` for a
        raw scan (primer, gap ring and some case head).

    Returns
    -------
    scan : Scan
        Heights in µm, ``modality="height"``, square pixels of ``pixel_um``,
        ``info`` = ``{"synthetic": "cartridge", "firearm", "shot",
        "difficulty"}`` (strings).
    truth : CartridgeTruth
        How the firearm's pattern was placed in the scan.

    Raises
    ------
    ScanError
        If a parameter is out of range (also a ``ValueError``).

    Notes
    -----
    The random quantities not given are drawn whether or not ``rotation_deg``
    and ``shift_um`` are given, so fixing one of them changes nothing else.
    """
    firearm = _seed(firearm, "firearm")
    shot = _seed(shot, "shot")
    difficulty = _number(difficulty, "difficulty", 0.0, 1.0)
    pixel_um = _number(pixel_um, "pixel_um", *PIXEL_UM_RANGE)
    primer_radius_um = _number(primer_radius_um, "primer_radius_um", 1500.0, 10_000.0)
    if size_um is None:
        size_um = (2.6 if raw else 1.6) * primer_radius_um
    size_um = _number(size_um, "size_um", 16.0 * pixel_um, MAX_SIDE_PX * pixel_um)
    geo = _firearm_geometry(firearm)
    sp = _shot_params(firearm, shot, difficulty)
    if rotation_deg is not None:
        rot = _number(rotation_deg, "rotation_deg", -1e6, 1e6)
        sp_rot = rot % 360.0
    else:
        sp_rot = sp.rotation_deg
    if shift_um is not None:
        try:
            sx, sy = (float(v) for v in shift_um)
        except (TypeError, ValueError):
            raise ScanError(None, f"shift_um must be a pair of numbers (µm), got {shift_um!r}") from None
        for name, v in (("x", sx), ("y", sy)):
            if not (math.isfinite(v) and abs(v) <= MAX_SHIFT_UM):
                raise ScanError(None, f"shift_um {name} must be within +-{MAX_SHIFT_UM:g} µm, got {v!r}")
    else:
        sx, sy = sp.shift_x_um, sp.shift_y_um
    truth = CartridgeTruth(
        firearm=firearm,
        shot=shot,
        rotation_deg=float(sp_rot),
        shift_x_um=float(sx),
        shift_y_um=float(sy),
        difficulty=difficulty,
    )
    n = max(16, int(round(size_um / pixel_um)))
    build = _raw_surface if raw else _processed_surface
    values = build(geo, sp, truth, n, pixel_um, primer_radius_um)
    scan = Scan(
        values=values,
        pixel_x_um=pixel_um,
        pixel_y_um=pixel_um,
        modality="height",
        source=None,
        info={
            "synthetic": "cartridge",
            "firearm": str(firearm),
            "shot": str(shot),
            "difficulty": f"{difficulty:g}",
        },
    )
    return scan, truth


def cartridge_population(
    n_firearms: int,
    shots_per_firearm: int,
    *,
    seed: int = 0,
    difficulty: float = 0.5,
    pixel_um: float = 6.25,
    raw: bool = False,
) -> Iterator[tuple[str, Scan, CartridgeTruth]]:
    """Draw scans of several shots from each of several firearms.

    Parameters
    ----------
    n_firearms : int
        Number of firearms (at least 1).
    shots_per_firearm : int
        Shots drawn per firearm (at least 1); shot seeds are ``0, 1, ...``.
    seed : int
        Population seed (non-negative). Firearm ``i`` has the seed
        ``seed * 2**32 + i``, so populations with different seeds share no
        firearm, and ``seed=0`` uses firearm seeds ``0 .. n_firearms - 1``.
    difficulty, pixel_um, raw
        As in :func:`cartridge_case`.

    Yields
    ------
    exhibit_id : str
        ``"syn-f{i:04d}-s{j:02d}"``: firearm index ``i`` and shot ``j``,
        both counted from 0.
    scan : Scan
    truth : CartridgeTruth

    Notes
    -----
    Scans are drawn lazily, firearm after firearm, so each firearm's pattern
    is computed once. Arguments are checked when this function is called.
    """
    n_firearms = _count(n_firearms, "n_firearms", 2**32)
    shots_per_firearm = _count(shots_per_firearm, "shots_per_firearm", 10**6)
    seed = _seed(seed, "seed")
    difficulty = _number(difficulty, "difficulty", 0.0, 1.0)
    pixel_um = _number(pixel_um, "pixel_um", *PIXEL_UM_RANGE)

    def generate() -> Iterator[tuple[str, Scan, CartridgeTruth]]:
        for i in range(n_firearms):
            fs = seed * 2**32 + i
            for j in range(shots_per_firearm):
                scan, truth = cartridge_case(fs, j, difficulty=difficulty, pixel_um=pixel_um, raw=raw)
                yield f"syn-f{i:04d}-s{j:02d}", scan, truth

    return generate()


def firearm_pattern(firearm: int, *, pixel_um: float = 6.25, primer_radius_um: float = 2200.0) -> np.ndarray:
    """The firearm's breech-face height pattern in its own frame.

    Parameters
    ----------
    firearm : int
        Firearm seed.
    pixel_um : float
        Grid spacing in µm, in ``[1, 25]``.
    primer_radius_um : float
        Primer radius the pattern must cover (as in :func:`cartridge_case`).

    Returns
    -------
    ndarray, shape (m, m), float64
        Heights in µm (about 1 µm RMS), ``m`` odd; the origin of the
        firearm's frame (the breech-face centre) is the middle point
        ``((m - 1) / 2, (m - 1) / 2)``, x along columns, y along rows. The
        grid reaches beyond the primer far enough for any allowed shift.
        The firing-pin aperture is NaN. A new array on every call.
    """
    firearm = _seed(firearm, "firearm")
    pixel_um = _number(pixel_um, "pixel_um", *PIXEL_UM_RANGE)
    primer_radius_um = _number(primer_radius_um, "primer_radius_um", 1500.0, 10_000.0)
    geo = _firearm_geometry(firearm)
    pat = _firearm_texture(firearm, pixel_um, primer_radius_um).astype(np.float64)
    m = pat.shape[0]
    c = np.arange(m, dtype=np.float64) * pixel_um - (m - 1) / 2 * pixel_um
    inside = (c[None, :] - geo.aperture_x_um) ** 2 + (c[:, None] - geo.aperture_y_um) ** 2 < geo.aperture_radius_um**2
    pat[inside] = np.nan
    return pat


# --------------------------------------------------------------------------- argument checks


def _seed(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ScanError(None, f"{name} must be a non-negative integer seed, got {v!r}")
    return int(v)


def _count(v, name: str, most: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= most:
        raise ScanError(None, f"{name} must be an integer from 1 to {most}, got {v!r}")
    return int(v)


def _number(v, name: str, lo: float, hi: float) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ScanError(None, f"{name} must be a number, got {v!r}") from None
    if not (math.isfinite(f) and lo <= f <= hi):
        raise ScanError(None, f"{name} must be within [{lo:g}, {hi:g}], got {v!r}")
    return f


# --------------------------------------------------------------------------- hashed noise
#
# Random values attached to physical lattice points through an integer hash of
# (key, lattice index): any window of any resolution sees the same values, so
# textures do not change with the grid.

_U64 = np.uint64
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)
_PRIME_X = _U64(0x9E3779B97F4A7C15)
_PRIME_Y = _U64(0xC2B2AE3D27D4EB4F)


def _mix(h: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, in place on a uint64 array."""
    h ^= h >> _U64(30)
    h *= _MIX1
    h ^= h >> _U64(27)
    h *= _MIX2
    h ^= h >> _U64(31)
    return h


def _lattice_hash(key: int, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """One uint64 per lattice point ``(iy[k], ix[l])``, shape ``(len(iy), len(ix))``."""
    hy = _mix(iy.astype(np.int64).view(_U64) * _PRIME_Y ^ np.array(key, dtype=_U64))
    hx = ix.astype(np.int64).view(_U64) * _PRIME_X
    return _mix(hy[:, None] ^ hx[None, :])


def _uniform(h: np.ndarray, stream: int) -> np.ndarray:
    """Uniform float32 in [0, 1) from a hash, one independent stream per ``stream``."""
    g = _mix(h ^ np.array((stream + 1) * 0x632BE59BD9B4E019 % 2**64, dtype=_U64))
    return (g >> _U64(40)).astype(np.float32) * np.float32(2.0**-24)


def _smooth_field(key: int, xs_um: np.ndarray, ys_um: np.ndarray, spacing_um: float) -> np.ndarray:
    """Smooth Gaussian-like random field of unit variance, shape ``(len(ys), len(xs))``.

    Lattice values (hashed, uniform with unit variance) at ``spacing_um``
    interpolated by a Gaussian of standard deviation ``spacing_um``;
    evaluated separably, so the cost is two small matrix products.
    """
    sig = spacing_um

    def weights(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = math.floor((float(c.min()) - 4 * sig) / spacing_um)
        hi = math.ceil((float(c.max()) + 4 * sig) / spacing_um)
        idx = np.arange(lo, hi + 1)
        d = (c[:, None] - idx[None, :] * spacing_um) / sig
        return np.exp(-0.5 * d * d).astype(np.float32), idx

    wx, ix = weights(np.asarray(xs_um, dtype=np.float64))
    wy, iy = weights(np.asarray(ys_um, dtype=np.float64))
    lat = (_uniform(_lattice_hash(key, iy, ix), 0) - np.float32(0.5)) * np.float32(math.sqrt(12.0))
    # per axis, the squared weights sum to sqrt(pi) sig / spacing
    norm = np.float32(spacing_um / (math.sqrt(math.pi) * sig))
    return (wy @ lat @ wx.T) * norm


def _exp_psd(f: np.ndarray, length_um: float) -> np.ndarray:
    """2-D power spectral density of the unit-variance covariance ``exp(-r / length)``."""
    a = 2.0 * math.pi * length_um
    return 2.0 * math.pi * length_um**2 / (1.0 + (a * f) ** 2) ** 1.5


def _bandpass(f: np.ndarray) -> np.ndarray:
    """Amplitude transmission of the ISO 16610-21 Gaussian band-pass of processed scans."""
    low = np.exp(-math.pi * (_ISO_ALPHA * _SHORT_CUTOFF_UM * f) ** 2)
    high = np.exp(-math.pi * (_ISO_ALPHA * _LONG_CUTOFF_UM * f) ** 2)
    return low * (1.0 - high)


@lru_cache(maxsize=64)
def _bandpassed_variance(lengths_um: tuple[float, ...], weights: tuple[float, ...]) -> float:
    """Variance left by the band-pass in a unit-variance mixture of exponential textures."""
    f = np.linspace(0.0, 0.25, 25_001)  # up to 1/(4 µm); the band-pass transmits < 1e-3 there
    psd = sum(w * _exp_psd(f, ln) for w, ln in zip(weights, lengths_um))
    integrand = psd * _bandpass(f) ** 2 * 2.0 * math.pi * f
    return float(np.sum(integrand) * (f[1] - f[0]))


def _transfer(
    shape: tuple[int, int],
    pixel_um: float,
    lattice_um: float,
    lengths_um: tuple[float, ...],
    weights: tuple[float, ...],
    bandpass: bool,
) -> np.ndarray:
    """rfft-domain filter turning hashed impulses into a texture.

    Scaled so that the band-passed texture has unit variance (the raw,
    unfiltered texture then has more, at long wavelengths). The filter is
    isotropic: computed on a fine radial grid and interpolated.
    """
    fy = sfft.fftfreq(shape[0], d=pixel_um).astype(np.float32)
    fx = sfft.rfftfreq(shape[1], d=pixel_um).astype(np.float32)
    f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    radial = np.linspace(0.0, float(f.max()) * 1.0001, 8192)
    psd = sum(w * _exp_psd(radial, ln) for w, ln in zip(weights, lengths_um))
    # unit-variance impulses at density 1 / lattice^2: field variance = integral of |K|^2 / lattice^2
    amp = np.sqrt(psd) * lattice_um / math.sqrt(_bandpassed_variance(lengths_um, weights)) / pixel_um**2
    if bandpass:
        amp = amp * _bandpass(radial)
    return np.interp(f, radial, amp).astype(np.float32)


#: The shot texture's filter is the same for every shot of a given grid: keep a few.
_shot_transfer = lru_cache(maxsize=4)(_transfer)


def _impulse_texture(
    key: int,
    xs_um: np.ndarray,
    ys_um: np.ndarray,
    pixel_um: float,
    lengths_um: tuple[float, ...],
    weights: tuple[float, ...],
    *,
    bandpass: bool,
    lattice_um: float,
    reuse_filter: bool = False,
) -> np.ndarray:
    """Isotropic random texture (float32) on the regular grid ``ys_um x xs_um``.

    Jittered lattice impulses (one per ``lattice_um`` cell, hashed, so the
    same physical point gets the same texture at any resolution and in any
    window) convolved with the square root of an exponential-correlation
    spectrum, through FFTs on a padded grid.
    """
    margin_um = 1.5 * max(lengths_um) + 150.0
    m = int(math.ceil(margin_um / pixel_um))
    rows, cols = len(ys_um), len(xs_um)
    shape = (_fast_len(rows + 2 * m + 2), _fast_len(cols + 2 * m + 2))
    x0 = float(xs_um[0]) - m * pixel_um
    y0 = float(ys_um[0]) - m * pixel_um
    # whole lattice cells inside the padded grid, so every impulse lands on it
    ix = np.arange(math.ceil(x0 / lattice_um), math.floor((x0 + (shape[1] - 1.01) * pixel_um) / lattice_um))
    iy = np.arange(math.ceil(y0 / lattice_um), math.floor((y0 + (shape[0] - 1.01) * pixel_um) / lattice_um))
    from ._synth_nb import impulse_splat

    grid = impulse_splat(
        np.uint64(key % 2**64), int(iy[0]) if len(iy) else 0, len(iy), int(ix[0]) if len(ix) else 0, len(ix),
        lattice_um / pixel_um, x0 / pixel_um, y0 / pixel_um, shape[0], shape[1],
    )
    tf = (_shot_transfer if reuse_filter else _transfer)(shape, pixel_um, lattice_um, lengths_um, weights, bandpass)
    out = sfft.irfft2(sfft.rfft2(grid) * tf, s=shape)
    return out[m : m + rows, m : m + cols]


@lru_cache(maxsize=256)
def _fast_len(n: int) -> int:
    """Smallest even 5-smooth number (2^a 3^b 5^c) at least ``n``: quick FFT sizes."""
    best = 2 * n + 2
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n or m % 2:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _splat(py: np.ndarray, px: np.ndarray, w: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Add weights at fractional positions (all inside the grid) into a grid, bilinearly."""
    i0 = np.floor(py)
    j0 = np.floor(px)
    fy = py - i0
    fx = px - j0
    base = i0.astype(np.int64) * shape[1] + j0.astype(np.int64)
    idx = np.concatenate((base, base + 1, base + shape[1], base + shape[1] + 1))
    wy0 = (1 - fy) * w
    wy1 = fy * w
    wts = np.concatenate((wy0 * (1 - fx), wy0 * fx, wy1 * (1 - fx), wy1 * fx))
    return np.bincount(idx, weights=wts, minlength=shape[0] * shape[1]).reshape(shape).astype(np.float32)


def _coarse_coords(xs_um: np.ndarray, step_um: float) -> np.ndarray:
    """Coordinates of a coarse grid of about ``step_um`` reaching one step beyond ``xs_um``."""
    n = len(xs_um)
    pixel = float(xs_um[1] - xs_um[0])
    nc = int(math.ceil((n - 1) * pixel / step_um)) + 3
    step = max(step_um, pixel)
    return float(xs_um[0]) - step + step * np.arange(nc)


def _upsample(coarse: np.ndarray, cy: np.ndarray, cx: np.ndarray, ys_um: np.ndarray, xs_um: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a field sampled at ``cy x cx`` onto ``ys_um x xs_um`` (regular grids)."""
    sx, sy = float(cx[1] - cx[0]), float(cy[1] - cy[0])
    px, py = float(xs_um[1] - xs_um[0]), float(ys_um[1] - ys_um[0])
    m = np.array([[px / sx, 0.0, (xs_um[0] - cx[0]) / sx], [0.0, py / sy, (ys_um[0] - cy[0]) / sy]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(coarse, m, (len(xs_um), len(ys_um)), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def _smooth_field_fast(key: int, xs_um: np.ndarray, ys_um: np.ndarray, spacing_um: float) -> np.ndarray:
    """:func:`_smooth_field` evaluated on a coarse grid and interpolated bilinearly."""
    cx = _coarse_coords(xs_um, spacing_um / 6.0)
    cy = _coarse_coords(ys_um, spacing_um / 6.0)
    return _upsample(_smooth_field(key, cx, cy, spacing_um), cy, cx, ys_um, xs_um)


# --------------------------------------------------------------------------- firearms


@dataclass(frozen=True)
class _MarkSet:
    """One set of roughly parallel tool marks in the firearm's frame."""

    angle_rad: float  # direction of the marks
    arc_radius_um: float  # 0: straight (filing); else milling arcs of this radius
    spacing_um: float  # mean distance between neighbouring marks
    waviness_um: float  # amplitude of the marks' lateral wander
    weight: float  # relative amplitude of the set
    index: int  # the set's number (seeds its grooves)


@dataclass(frozen=True)
class _FirearmGeometry:
    key: int  # hash key of the granular texture
    iso_lengths_um: tuple[float, float]
    iso_weights: tuple[float, float]
    marks_share: float  # share of the pattern's variance carried by tool marks
    mark_sets: tuple[_MarkSet, ...]
    aperture_x_um: float  # firing-pin aperture centre (firearm frame)
    aperture_y_um: float
    aperture_radius_um: float
    crater_radius_um: float  # firing-pin tip impression
    crater_depth_um: float


@lru_cache(maxsize=4096)
def _firearm_geometry(firearm: int) -> _FirearmGeometry:
    ss = np.random.SeedSequence([_TAG_FIREARM, firearm])
    rng = np.random.default_rng(ss)
    key = int(ss.generate_state(1, np.uint64)[0])
    l1 = float(rng.uniform(30.0, 80.0))
    l2 = float(rng.uniform(80.0, 200.0))
    w1 = float(rng.uniform(0.3, 0.7))
    marks_share = float(rng.uniform(0.2, 0.6))
    base_angle = float(rng.uniform(0.0, math.pi))
    n_sets = 2 if rng.random() < 0.5 else 1
    sets = []
    for k in range(2):
        arc = rng.random() < 0.5
        arc_r = float(rng.uniform(3000.0, 12000.0)) if arc else 0.0
        spacing = float(math.exp(rng.uniform(math.log(50.0), math.log(300.0))))
        wav = float(rng.uniform(5.0, 25.0))
        cross = float(rng.uniform(math.radians(30), math.radians(90)) * rng.choice([-1.0, 1.0]))
        weight = 1.0 if k == 0 else float(rng.uniform(0.3, 0.8))
        if k < n_sets:
            sets.append(_MarkSet(base_angle + (cross if k else 0.0), arc_r, spacing, wav, weight, k))
    off = float(rng.uniform(0.0, 300.0))
    off_dir = float(rng.uniform(0.0, 2 * math.pi))
    ap_r = float(rng.uniform(500.0, 1000.0))
    crater_r = min(max(400.0, ap_r * float(rng.uniform(0.6, 0.85))), 900.0, ap_r - 60.0)
    return _FirearmGeometry(
        key=key,
        iso_lengths_um=(l1, l2),
        iso_weights=(w1, 1.0 - w1),
        marks_share=marks_share,
        mark_sets=tuple(sets),
        aperture_x_um=off * math.cos(off_dir),
        aperture_y_um=off * math.sin(off_dir),
        aperture_radius_um=ap_r,
        crater_radius_um=crater_r,
        crater_depth_um=float(rng.uniform(100.0, 300.0)),
    )


_PROFILE_STEP_UM = 2.0
_GROOVE_CHUNK = 64


def _groove_profile(firearm: int, ms: _MarkSet, reach_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Band-passed 1-D height profile across one set of marks, unit RMS.

    Grooves (and ridges) of random amplitude and width are laid outwards
    from 0 in both directions, in fixed-size chunks from independent
    streams, so a longer reach adds grooves without changing the others.
    """
    ss = np.random.SeedSequence([_TAG_MARKS, firearm, ms.index])
    pos_rng, neg_rng = (np.random.default_rng(s) for s in ss.spawn(2))
    centres, amps, widths = [], [], []
    for rng, sign in ((pos_rng, 1.0), (neg_rng, -1.0)):
        edge = 0.5 * ms.spacing_um * float(rng.random())
        while edge < reach_um + 1000.0:
            gaps = ms.spacing_um * rng.uniform(0.4, 1.6, _GROOVE_CHUNK)
            amp = rng.standard_normal(_GROOVE_CHUNK) * rng.uniform(0.3, 1.0, _GROOVE_CHUNK)
            wid = ms.spacing_um * rng.uniform(0.08, 0.3, _GROOVE_CHUNK)
            pos = edge + np.cumsum(gaps) - gaps[0]
            edge = float(pos[-1] + gaps[-1] * 0.5)
            centres.append(sign * pos)
            amps.append(amp)
            widths.append(wid)
    c, a, w = np.concatenate(centres), np.concatenate(amps), np.concatenate(widths)
    v = np.arange(-reach_um - 800.0, reach_um + 800.0 + _PROFILE_STEP_UM, _PROFILE_STEP_UM)
    near = np.abs(c) < v[-1] + 4 * w
    c, a, w = c[near], a[near], w[near]
    # each groove drawn over +-4 widths only: a window of samples per groove
    half_win = int(math.ceil(4 * float(w.max()) / _PROFILE_STEP_UM)) if len(w) else 0
    start = np.round((c - v[0]) / _PROFILE_STEP_UM).astype(np.int64) - half_win
    idx = start[:, None] + np.arange(2 * half_win + 1)[None, :]
    d = (v[0] + idx * _PROFILE_STEP_UM - c[:, None]) / w[:, None]
    ok = (idx >= 0) & (idx < len(v))
    prof = np.bincount(idx[ok], weights=(a[:, None] * np.exp(-0.5 * d * d))[ok], minlength=len(v))
    f = sfft.rfftfreq(len(v), d=_PROFILE_STEP_UM)
    prof = sfft.irfft(sfft.rfft(prof - prof.mean()) * _bandpass(f), n=len(v))
    inner = np.abs(v) <= reach_um
    prof /= max(float(np.sqrt(np.mean(prof[inner] ** 2))), 1e-12)
    return v, prof


class _ArrayCache:
    """Least-recently-used cache of read-only arrays, bounded in bytes.

    Keeps at least the most recent entry, whatever its size. Thread-safe;
    two threads missing the same key may both compute it.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, make: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        arr = make()
        arr.setflags(write=False)
        with self._lock:
            self._items[key] = arr
            self._items.move_to_end(key)
            total = sum(a.nbytes for a in self._items.values())
            while len(self._items) > 1 and total > self.max_bytes:
                _, old = self._items.popitem(last=False)
                total -= old.nbytes
        return arr

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


#: Firearm patterns (float32, about 3 MB each at 6.25 µm/px, 120 MB at 1 µm/px).
_PATTERNS = _ArrayCache(256 * 1024**2)


def _firearm_texture(firearm: int, pixel_um: float, primer_radius_um: float) -> np.ndarray:
    """The firearm's breech-face pattern (float32, read-only, cached)."""
    key = (firearm, pixel_um, primer_radius_um)
    return _PATTERNS.get(key, lambda: _make_pattern(firearm, pixel_um, primer_radius_um))


def _make_pattern(firearm: int, pixel_um: float, primer_radius_um: float) -> np.ndarray:
    geo = _firearm_geometry(firearm)
    half = primer_radius_um + _PATTERN_MARGIN_UM
    h = int(math.ceil(half / pixel_um))
    c = (np.arange(2 * h + 1) - h) * pixel_um  # physical coordinate of each row / column
    iso = _impulse_texture(geo.key, c, c, pixel_um, geo.iso_lengths_um, geo.iso_weights, bandpass=True, lattice_um=16.0)
    marks = np.zeros_like(iso)
    reach = half * math.sqrt(2.0) + 100.0
    c32 = c.astype(np.float32)
    zeros = np.zeros_like(iso)
    for ms in geo.mark_sets:
        v_grid, prof = _groove_profile(firearm, ms, reach)
        cos_a, sin_a = math.cos(ms.angle_rad), math.sin(ms.angle_rad)
        if ms.arc_radius_um > 0:  # arc centre on the marks' normal, so they run along angle_rad near 0
            cx, cy = -sin_a * ms.arc_radius_um, cos_a * ms.arc_radius_um
            v = np.sqrt((c32[None, :] - np.float32(cx)) ** 2 + (c32[:, None] - np.float32(cy)) ** 2)
            v -= np.float32(ms.arc_radius_um)
        else:
            v = np.float32(-sin_a) * c32[None, :] + np.float32(cos_a) * c32[:, None]
        mkey = (geo.key + 0x1000 * (ms.index + 1)) % 2**64
        v += np.float32(ms.waviness_um) * _smooth_field_fast(mkey, c, c, 400.0)
        mod = np.maximum(1.0 + 0.6 * _smooth_field_fast(mkey ^ 0xABCDEF, c, c, 250.0), 0.0)
        # profile lookup at v: bilinear remap on a one-row image (uniform sample spacing)
        col = (v - np.float32(v_grid[0])) * np.float32(1.0 / _PROFILE_STEP_UM)
        row = prof.astype(np.float32)[None, :]
        look = cv2.remap(row, col, zeros, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        marks += np.float32(ms.weight) * look * mod
    disc = c[None, :] ** 2 + c[:, None] ** 2 <= primer_radius_um**2
    marks /= max(float(np.sqrt(np.mean(marks[disc] ** 2))), 1e-12)
    pat = math.sqrt(1.0 - geo.marks_share) * iso + math.sqrt(geo.marks_share) * marks
    pat -= float(pat[disc].mean())
    pat /= float(np.sqrt(np.mean(pat[disc] ** 2)))
    return pat.astype(np.float32)


# --------------------------------------------------------------------------- shots


@dataclass(frozen=True)
class _ShotParams:
    key: int  # hash key of the shot's texture and contact map
    rotation_deg: float
    shift_x_um: float
    shift_y_um: float
    primer_x_um: float  # primer centre from the grid centre
    primer_y_um: float
    texture_rms_um: float  # shot texture relative to the 1 µm firearm pattern
    weak_share: float  # share of the primer with a weak imprint
    contact_slope: float  # one-sided trend of the contact map
    contact_dir_rad: float
    aperture_margin_um: float  # processed mask beyond the aperture
    # dropout blobs: centre in the unit disc (times the primer radius), semi-axes (µm), angle
    blobs: tuple[tuple[float, float, float, float, float], ...]
    crater_depth_factor: float
    bulge_um: float  # primer flow-back into the aperture
    primer_height_um: float  # primer relative to the case head
    gap_width_um: float
    gap_depth_um: float
    rolloff_um: float  # drop of the primer edge
    tilt_rad: float
    tilt_dir_rad: float
    sag_um: float  # curvature: height change at 3 mm from the centre
    noise_seed: int
    spikes: tuple[tuple[float, float, float], ...]  # x, y in [-1, 1] (x half the field), height (µm)


def _texture_rms(difficulty: float) -> float:
    """Shot-texture RMS (µm, pattern = 1 µm) for a difficulty in [0, 1]."""
    return 0.3 * math.exp(difficulty * (2.29 - 0.42 * difficulty))


@lru_cache(maxsize=1024)
def _shot_params(firearm: int, shot: int, difficulty: float) -> _ShotParams:
    ss = np.random.SeedSequence([_TAG_SHOT, firearm, shot])
    rng = np.random.default_rng(ss)
    key, noise_seed = (int(k) for k in ss.generate_state(2, np.uint64))
    rotation = float(rng.uniform(0.0, 360.0))
    shift = rng.uniform(-RANDOM_SHIFT_UM, RANDOM_SHIFT_UM, 2)
    primer = rng.uniform(-PRIMER_OFFSET_UM, PRIMER_OFFSET_UM, 2)
    weak_jitter = float(rng.uniform(0.75, 1.0))
    contact_slope = float(rng.uniform(0.0, 1.5))
    contact_dir = float(rng.uniform(0.0, 2 * math.pi))
    ap_margin = float(rng.uniform(0.0, 50.0))
    n_blobs = int(rng.integers(1, 6))
    blob_draw = rng.random((5, 5))
    blobs = tuple(
        (
            math.sqrt(b[0]) * math.cos(2 * math.pi * b[1]),  # unit disc, scaled later
            math.sqrt(b[0]) * math.sin(2 * math.pi * b[1]),
            15.0 + 85.0 * b[2],
            15.0 + 45.0 * b[3],
            math.pi * b[4],
        )
        for b in blob_draw[:n_blobs]
    )
    crater_factor = float(rng.uniform(0.9, 1.1))
    bulge = float(rng.uniform(2.0, 10.0))
    primer_h = float(rng.uniform(-20.0, 20.0))
    gap_w = float(rng.uniform(80.0, 150.0))
    gap_d = float(rng.uniform(50.0, 200.0))
    rolloff = float(rng.uniform(3.0, 15.0))
    tilt = math.radians(float(rng.uniform(0.0, 2.0)))
    tilt_dir = float(rng.uniform(0.0, 2 * math.pi))
    sag = float(rng.uniform(-15.0, 15.0))
    n_spikes = int(rng.integers(3, 13))
    sp = rng.random((12, 3))
    spikes = tuple(
        (float(2 * s[0] - 1), float(2 * s[1] - 1), float(math.copysign(30.0 + 50.0 * abs(2 * s[2] - 1), s[2] - 0.5)))
        for s in sp[:n_spikes]
    )
    return _ShotParams(
        key=key,
        rotation_deg=rotation,
        shift_x_um=float(shift[0]),
        shift_y_um=float(shift[1]),
        primer_x_um=float(primer[0]),
        primer_y_um=float(primer[1]),
        texture_rms_um=_texture_rms(difficulty),
        weak_share=0.4 * difficulty * weak_jitter,
        contact_slope=contact_slope,
        contact_dir_rad=contact_dir,
        aperture_margin_um=ap_margin,
        blobs=blobs,
        crater_depth_factor=crater_factor,
        bulge_um=bulge,
        primer_height_um=primer_h,
        gap_width_um=gap_w,
        gap_depth_um=gap_d,
        rolloff_um=rolloff,
        tilt_rad=tilt,
        tilt_dir_rad=tilt_dir,
        sag_um=sag,
        noise_seed=noise_seed,
        spikes=spikes,
    )


def _grid(n: int, pixel_um: float) -> np.ndarray:
    """Physical coordinates (µm from the grid centre) of the rows / columns."""
    return ((np.arange(n) - (n - 1) / 2.0) * pixel_um).astype(np.float64)


def _place_pattern(pattern: np.ndarray, truth: CartridgeTruth, n: int, pixel_um: float) -> np.ndarray:
    """The firearm's pattern rotated and shifted onto the scan grid (bilinear)."""
    a = math.radians(truth.rotation_deg)
    cs, sn = math.cos(a), math.sin(a)
    cf = (pattern.shape[0] - 1) / 2.0
    cg = (n - 1) / 2.0
    tx, ty = truth.shift_x_um / pixel_um, truth.shift_y_um / pixel_um
    # scan pixel (col j, row i) -> pattern pixel: u = R(-a) (X - t), with R(a) = [[c, s], [-s, c]]
    m = np.array(
        [
            [cs, -sn, -cs * (cg + tx) + sn * (cg + ty) + cf],
            [sn, cs, -sn * (cg + tx) - cs * (cg + ty) + cf],
        ]
    )
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(pattern, m, (n, n), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def _aperture_centre(geo: _FirearmGeometry, truth: CartridgeTruth) -> tuple[float, float]:
    """Centre of the firing-pin aperture in the scan (µm from the grid centre)."""
    a = math.radians(truth.rotation_deg)
    cs, sn = math.cos(a), math.sin(a)
    ux, uy = geo.aperture_x_um, geo.aperture_y_um
    return cs * ux + sn * uy + truth.shift_x_um, -sn * ux + cs * uy + truth.shift_y_um


def _contact_weight(sp: _ShotParams, xs: np.ndarray, primer_radius_um: float) -> np.ndarray:
    """Imprint weight: 1 where the primer touched the breech face, ``_WEAK_IMPRINT`` where not.

    A smooth random field plus a one-sided trend (a tilted cartridge touches
    on one side), thresholded at the quantile that leaves ``weak_share`` of
    the primer with a weak imprint, with a soft edge. Computed on a coarse
    grid and interpolated.
    """
    n = len(xs)
    if sp.weak_share <= 0:
        return np.ones((n, n), np.float32)
    cx = _coarse_coords(xs, 30.0)
    field = _smooth_field(sp.key ^ 0xC0C0, cx, cx, 180.0)
    trend = math.cos(sp.contact_dir_rad) * (cx[None, :] - sp.primer_x_um)
    trend = trend + math.sin(sp.contact_dir_rad) * (cx[:, None] - sp.primer_y_um)
    field += (sp.contact_slope / primer_radius_um * trend).astype(np.float32)
    in_primer = (cx[None, :] - sp.primer_x_um) ** 2 + (cx[:, None] - sp.primer_y_um) ** 2 <= primer_radius_um**2
    if not in_primer.any():
        return np.ones((n, n), np.float32)
    thr = float(np.quantile(field[in_primer], sp.weak_share))
    t = np.clip((field - np.float32(thr)) * np.float32(4.0) + np.float32(0.5), 0.0, 1.0)
    weight = np.float32(_WEAK_IMPRINT) + np.float32(1 - _WEAK_IMPRINT) * t * t * (3 - 2 * t)
    return _upsample(weight, cx, cx, xs, xs)


@dataclass
class _Layout:
    """Coordinates and the imprinted surface shared by raw and processed scans."""

    xs: np.ndarray  # µm from the grid centre, rows and columns alike
    r2_primer: np.ndarray  # squared distance from the primer centre (µm^2, float32)
    aperture: tuple[float, float]  # aperture centre in the scan (µm)
    surface: np.ndarray  # pattern * contact + shot texture (µm, float32)
    texture: np.ndarray  # the shot's own texture, unit RMS after band-pass (float32)


def _layout(
    geo: _FirearmGeometry,
    sp: _ShotParams,
    truth: CartridgeTruth,
    n: int,
    pixel_um: float,
    primer_radius_um: float,
    *,
    bandpass: bool,
) -> _Layout:
    xs = _grid(n, pixel_um)
    dx = (xs - sp.primer_x_um).astype(np.float32)
    dy = (xs - sp.primer_y_um).astype(np.float32)
    r2 = dx[None, :] ** 2 + dy[:, None] ** 2
    pattern = _place_pattern(_firearm_texture(truth.firearm, pixel_um, primer_radius_um), truth, n, pixel_um)
    pattern *= _contact_weight(sp, xs, primer_radius_um)
    texture = _impulse_texture(
        sp.key,
        xs,
        xs,
        pixel_um,
        _SHOT_TEXTURE_LENGTHS_UM,
        (0.5, 0.5),
        bandpass=bandpass,
        lattice_um=_LATTICE_UM,
        reuse_filter=True,
    )
    pattern += np.float32(sp.texture_rms_um) * texture
    return _Layout(xs, r2, _aperture_centre(geo, truth), pattern, texture)


def _box(xs: np.ndarray, cx: float, cy: float, radius: float) -> tuple[slice, slice]:
    """Rows and columns of the grid within ``radius`` of ``(cx, cy)`` (a square)."""
    n, pixel = len(xs), float(xs[1] - xs[0])
    j0 = min(n, max(0, int(math.floor((cx - radius - xs[0]) / pixel))))
    j1 = min(n, max(0, int(math.ceil((cx + radius - xs[0]) / pixel)) + 1))
    i0 = min(n, max(0, int(math.floor((cy - radius - xs[0]) / pixel))))
    i1 = min(n, max(0, int(math.ceil((cy + radius - xs[0]) / pixel)) + 1))
    return slice(i0, i1), slice(j0, j1)


def _blobs(sp: _ShotParams, xs: np.ndarray, primer_radius_um: float) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """The shot's dropout blobs (ellipses placed in the primer): ``(rows, cols, inside)``."""
    for ux, uy, a, b, ang in sp.blobs:
        bx = sp.primer_x_um + ux * primer_radius_um
        by = sp.primer_y_um + uy * primer_radius_um
        rows, cols = _box(xs, bx, by, a)
        px = xs[cols][None, :] - bx
        py = xs[rows][:, None] - by
        cs, sn = math.cos(ang), math.sin(ang)
        p = (cs * px + sn * py) / a
        q = (-sn * px + cs * py) / b
        yield rows, cols, p * p + q * q <= 1.0


def _processed_surface(
    geo: _FirearmGeometry, sp: _ShotParams, truth: CartridgeTruth, n: int, pixel_um: float, primer_radius_um: float
) -> np.ndarray:
    lay = _layout(geo, sp, truth, n, pixel_um, primer_radius_um, bandpass=True)
    surface = lay.surface
    rng = np.random.default_rng(sp.noise_seed)
    noise = (rng.random((n, n), dtype=np.float32) - np.float32(0.5)) * np.float32(math.sqrt(12.0))
    sigma_px = _ISO_ALPHA * _SHORT_CUTOFF_UM / math.sqrt(2 * math.pi) / pixel_um
    gain = _PROCESSED_NOISE_UM
    if sigma_px > 0.3:  # instrument noise, through the band-pass's short cut-off
        ksize = 2 * int(math.ceil(4 * sigma_px)) + 1
        k = cv2.getGaussianKernel(ksize, sigma_px)
        noise = cv2.sepFilter2D(noise, -1, k, k, borderType=cv2.BORDER_REFLECT)
        gain /= float(np.sum(k * k))  # unit variance after the filter
    surface += np.float32(gain) * noise
    keep = lay.r2_primer <= np.float32(primer_radius_um**2)
    ax, ay = lay.aperture
    r_mask = geo.aperture_radius_um + sp.aperture_margin_um
    rows, cols = _box(lay.xs, ax, ay, r_mask)
    keep[rows, cols] &= (lay.xs[cols][None, :] - ax) ** 2 + (lay.xs[rows][:, None] - ay) ** 2 >= r_mask**2
    for rows, cols, inside in _blobs(sp, lay.xs, primer_radius_um):
        keep[rows, cols] &= ~inside
    if not keep.any():
        raise ScanError(None, "the grid holds no part of the breech face; enlarge size_um")
    surface -= np.float32(surface[keep].mean())
    out = surface.astype(np.float64)
    out[~keep] = np.nan
    return out


def _raw_surface(
    geo: _FirearmGeometry, sp: _ShotParams, truth: CartridgeTruth, n: int, pixel_um: float, primer_radius_um: float
) -> np.ndarray:
    f32 = np.float32
    lay = _layout(geo, sp, truth, n, pixel_um, primer_radius_um, bandpass=False)
    xs, z = lay.xs, lay.surface
    R = primer_radius_um
    slope_idx, slope_val = [], []  # steep points (flat indices) and their slopes
    # firing-pin aperture: no breech face there, so no imprint; a raised-cosine
    # crater from the pin tip, and primer metal flowing back up around it
    ap_r, cr_r = geo.aperture_radius_um, geo.crater_radius_um
    depth = geo.crater_depth_um * sp.crater_depth_factor
    ax, ay = lay.aperture
    rows, cols = _box(xs, ax, ay, ap_r)
    r_a = np.sqrt((xs[cols][None, :] - ax) ** 2 + (xs[rows][:, None] - ay) ** 2).astype(np.float32)
    in_ap = r_a < ap_r
    t = np.minimum(r_a / f32(cr_r), f32(1.0))
    bowl = f32(0.5 * depth) * (1 + np.cos(f32(math.pi) * t))
    s = np.clip((r_a - f32(cr_r)) / f32(ap_r - cr_r), 0.0, 1.0)
    sub = f32(sp.texture_rms_um) * lay.texture[rows, cols] - bowl + f32(sp.bulge_um) * np.sin(f32(math.pi) * s)
    z[rows, cols] = np.where(in_ap, sub, z[rows, cols])
    wall = f32(0.5 * depth * math.pi / cr_r) * np.abs(np.sin(f32(math.pi) * t))
    ii, jj = np.nonzero(wall > 0.6)
    slope_idx.append((ii + rows.start) * n + jj + cols.start)
    slope_val.append(wall[ii, jj])
    # primer at its own height, edge rolled off over 150 µm; gap ring; case head
    z += f32(sp.primer_height_um)
    w, d = sp.gap_width_um, sp.gap_depth_um
    np.copyto(z, f32(1.5 * sp.texture_rms_um) * lay.texture, where=lay.r2_primer >= f32((R + w) ** 2))
    r2 = lay.r2_primer.ravel()
    ring = np.flatnonzero((r2 > f32((R - 150.0) ** 2)) & (r2 < f32((R + w) ** 2)))
    r_p = np.sqrt(r2[ring])
    zf = z.ravel()
    edge = np.clip((r_p - f32(R - 150.0)) / f32(150.0), 0.0, 1.0)
    rim = zf[ring] - f32(sp.rolloff_um) * edge * edge
    g = np.clip((r_p - f32(R)) / f32(w), 0.0, 1.0)
    gap = f32(sp.primer_height_um - sp.rolloff_um) * (1 - g) - f32(d) * np.sin(f32(math.pi) * g) ** 2
    zf[ring] = np.where(r_p <= R, rim, gap)
    gap_slope = f32(d * math.pi / w) * np.abs(np.sin(f32(2 * math.pi) * g))
    steep = np.flatnonzero(gap_slope > 0.6)
    slope_idx.append(ring[steep])
    slope_val.append(gap_slope[steep])
    # form of the mounting (not rotated with the case): tilt and gentle curvature
    tan_t = math.tan(sp.tilt_rad)
    curv = sp.sag_um / 3000.0**2
    z += (tan_t * math.cos(sp.tilt_dir_rad) * xs + curv * xs * xs).astype(np.float32)[None, :]
    z += (tan_t * math.sin(sp.tilt_dir_rad) * xs + curv * xs * xs).astype(np.float32)[:, None]
    rng = np.random.default_rng(sp.noise_seed)
    noise = rng.random((n, n), dtype=np.float32) - f32(0.5)  # white, uniform: cheaper than normal
    z += f32(_RAW_NOISE_UM * math.sqrt(12.0)) * noise
    out = z.astype(np.float64)
    # spikes: isolated outliers anywhere in the field
    half = float(xs[-1])
    for sx, sy, h in sp.spikes:
        j = min(max(int(round((sx * half - xs[0]) / pixel_um)), 0), n - 1)
        i = min(max(int(round((sy * half - xs[0]) / pixel_um)), 0), n - 1)
        out[i, j] += h
    # dropouts: steep walls, the steeper the likelier; and a few blobs
    idx = np.concatenate(slope_idx)
    p_drop = np.clip((np.concatenate(slope_val) - 0.6) / 1.0, 0.0, 0.95)
    out.ravel()[idx[rng.random(len(idx), dtype=np.float32) < p_drop]] = np.nan
    for rows, cols, inside in _blobs(sp, xs, R):
        out[rows, cols][inside] = np.nan
    return out


def raw_case_head(scan: Scan, rng: np.random.Generator, *, flowback: bool = True,
                  crater_measured: bool = True, case_head: bool = True,
                  crater_offset: float = 0.0) -> tuple[Scan, dict]:
    """A processed breech-face scan put back into a raw scan of the whole case head, and what was done.

    The CSAFE Fadul files hold the breech face alone (levelled, band-passed,
    NaN elsewhere). A raw scan from a lab's instrument holds the case head: the
    primer at its own height, the firing-pin crater, the gap ring and some of
    the case head around it, the holder's tilt and curvature, spikes and
    dropouts on steep walls, and no mask. The real marks are kept where they
    were measured; the rest of the scene is drawn with the physical ranges of
    this module's raw model (crater 100-300 µm deep, gap ring 80-150 µm
    wide and 50-200 µm deep, primer +-20 µm off the case head, tilt 0-2°, sag
    +-15 µm over 3 mm).

    Geometry taken from the file: the primer's centre is the grid's centre
    (the CSAFE crops are centred on it), its radius 100 µm beyond the farthest
    measured point (99.9th percentile), the rim that cmcR removes (about 94 µm,
    Zemmels et al. 2023); the firing-pin aperture is the unmeasured region
    enclosed by the breech face, the crater 0.45-0.65 of its radius.
    Unmeasured primer outside the aperture (that rim, and where the file
    masked more) gets weakly marked primer texture of its own, 0.3 of the
    marks' RMS: it carries no mate's marks, so the comparison has to do with
    less than the processed file gave it.

    Parameters
    ----------
    scan : Scan
        A processed height scan: the breech face measured, NaN elsewhere,
        the firing-pin aperture an unmeasured region inside it.
    rng : numpy.random.Generator
        Draws the scene.
    flowback : bool
        False leaves out the primer that flowed back into the aperture around
        the crater (a ring raised by 2-10 µm, as in the raw model), all else
        drawn the same: it shows what that ring does.
    crater_measured : bool
        False leaves the crater unmeasured (NaN out to its rim), as an
        instrument that cannot follow its walls does; all else the same.
    case_head : bool
        False cuts the scan round at the breech face's outer edge (the file's):
        no rim, gap ring or case head, only the primer's face with the
        aperture's contents, as a mask drawn on a raw scan that kept the
        flowed-back primer would leave it; all else drawn the same.
    crater_offset : float
        The crater's centre off the aperture's by this share of the clearance
        between them (0-1), in a random direction, as an off-centre strike
        leaves it; the flowed-back primer is then a crescent that falls to the
        breech face at the aperture's edge all round. 0 draws the scene as
        before, to the bit.

    Returns
    -------
    Scan, dict
        The raw scan (same pixel size; grid grown to hold the gap ring and
        400 µm of case head) and the scene's geometry in µm (x, y), point
        (row i, column j) at (j, i) times the pixel size: ``primer_centre_um``,
        ``primer_radius_um``, ``aperture_centre_um``, ``aperture_radius_um``, ...
    """
    from scipy import ndimage

    z = np.asarray(scan.values, dtype=np.float64)
    px = float(scan.pixel_x_um)
    if scan.modality != "height" or not math.isclose(px, float(scan.pixel_y_um), rel_tol=1e-9):
        raise ScanError(scan.source, "raw_case_head needs a height scan with square pixels")
    meas = np.isfinite(z)
    if meas.sum() < 16:
        raise ScanError(scan.source, "raw_case_head: the scan holds no measured breech face")
    rms = float(np.nanstd(z))
    h, w = z.shape
    cy0, cx0 = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.nonzero(meas)
    edge_r = float(np.percentile(np.hypot(yy - cy0, xx - cx0), 99.9)) * px + px
    primer_r = edge_r + 100.0  # the file's edge lies inside the rolled-over rim cmcR removed
    # the aperture: the largest unmeasured region well inside the primer
    fy, fx = np.mgrid[0:h, 0:w]
    lab, n_holes = ndimage.label(~meas & (np.hypot(fy - cy0, fx - cx0) * px < edge_r - 50.0))
    if n_holes == 0:
        raise ScanError(scan.source, "raw_case_head: no unmeasured firing-pin aperture inside the breech face "
                                     "(a processed breech-face scan is needed)")
    hole = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
    hy, hx = np.nonzero(hole)
    gap_w, gap_d = float(rng.uniform(80.0, 150.0)), float(rng.uniform(50.0, 200.0))
    margin = int(math.ceil((max(primer_r - min(h, w) * px / 2, 0.0) + gap_w + 400.0) / px))  # 400 µm of case head
    n = 2 * margin + max(h, w)
    oy, ox = (n - h) // 2, (n - w) // 2  # the file's grid inside the new one
    c = (n - 1) / 2
    gy, gx = np.mgrid[0:n, 0:n].astype(np.float64)
    pcy, pcx = cy0 + oy, cx0 + ox
    r = np.hypot(gy - pcy, gx - pcx) * px  # µm from the primer's centre

    def texture(sigma_um: float, rms_um: float) -> np.ndarray:
        t = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma_um / px)
        return t * (rms_um / t.std())

    out = texture(20.0, 0.3 * rms)
    placed = np.zeros((n, n), bool)
    placed[oy : oy + h, ox : ox + w] = meas
    out[placed] = z[meas]
    # firing-pin aperture: crater (raised cosine) and metal flowing back up around it
    ay, ax = hy.mean() + oy, hx.mean() + ox
    ap_r = math.sqrt(hole.sum() / math.pi) * px
    cr_r = float(rng.uniform(0.45, 0.65)) * ap_r
    depth = float(rng.uniform(100.0, 300.0))
    in_ap = np.zeros((n, n), bool)
    in_ap[oy : oy + h, ox : ox + w] = hole
    cy_, cx_ = ay, ax  # the crater's centre
    if crater_offset:
        turn = float(rng.uniform(0.0, 2 * math.pi))
        shift = crater_offset * (ap_r - cr_r) / px
        cy_, cx_ = ay + shift * math.sin(turn), ax + shift * math.cos(turn)
    r_a = np.hypot(gy - cy_, gx - cx_) * px
    t = np.minimum(r_a / cr_r, 1.0)
    if crater_offset:  # from the crater's rim (0) to the aperture's edge (1) along each ray
        inner = np.maximum(r_a - cr_r, 0.0)
        s = inner / (inner + np.maximum(ap_r - np.hypot(gy - ay, gx - ax) * px, 0.0) + 1e-9)
    else:
        s = np.clip((r_a - cr_r) / (ap_r - cr_r), 0.0, 1.0)
    bulge = float(rng.uniform(2.0, 10.0))  # drawn either way: the rest of the scene stays the same
    if not flowback:
        bulge = 0.0
    geometry = np.where(in_ap, -0.5 * depth * (1 + np.cos(math.pi * t)) + bulge * np.sin(math.pi * s), 0.0)
    # primer at its own height, edge rolled off over 150 µm, gap ring, case head
    primer_h, rolloff = float(rng.uniform(-20.0, 20.0)), float(rng.uniform(3.0, 15.0))
    edge = np.clip((r - (primer_r - 150.0)) / 150.0, 0.0, 1.0)
    g = np.clip((r - primer_r) / gap_w, 0.0, 1.0)
    geometry += np.where(r <= primer_r, primer_h - rolloff * edge**2,
                         (primer_h - rolloff) * (1 - g) - gap_d * np.sin(math.pi * g) ** 2)
    head = r >= primer_r + gap_w
    out[head] = texture(20.0, 1.5 * rms)[head]
    slope = np.hypot(*np.gradient(geometry, px))
    out += geometry
    # the holder: tilt and curvature about the grid centre
    tilt, azimuth = float(rng.uniform(0.0, 2.0)), float(rng.uniform(0.0, 2 * math.pi))
    sag = float(rng.uniform(-15.0, 15.0))
    X, Y = (gx - c) * px, (gy - c) * px
    out += math.tan(math.radians(tilt)) * (math.cos(azimuth) * X + math.sin(azimuth) * Y)
    out += sag * (X**2 + Y**2) / 3000.0**2
    out += rng.uniform(-0.5, 0.5, (n, n)) * (_RAW_NOISE_UM * math.sqrt(12.0))
    # dropouts on steep walls (the steeper the likelier), spikes anywhere
    drop = rng.random((n, n)) < np.clip(slope - 0.6, 0.0, 0.95)
    out[drop] = np.nan
    k = int(rng.integers(3, 13))
    out[rng.integers(0, n, k), rng.integers(0, n, k)] += rng.choice([-1.0, 1.0], k) * rng.uniform(30.0, 80.0, k)
    if not crater_measured:
        out[r_a < cr_r] = np.nan
    if not case_head:
        out[r > edge_r] = np.nan
    done = {"raw": True, "primer_radius_um": primer_r, "primer_centre_um": [float(pcx * px), float(pcy * px)],
            "aperture_radius_um": ap_r, "aperture_centre_um": [float(ax * px), float(ay * px)],
            "crater_radius_um": cr_r, "crater_depth_um": depth, "crater_measured": crater_measured,
            "case_head": case_head, **({} if case_head else {"cut_radius_um": edge_r}),
            **({"crater_centre_um": [float(cx_ * px), float(cy_ * px)]} if crater_offset else {}),
            "gap_width_um": gap_w, "gap_depth_um": gap_d, "primer_height_um": primer_h, "tilt_deg": tilt,
            "sag_um": sag, "flowback_um": bulge, "grid": [n, n], "filled_share_of_primer": float(
                ((r <= primer_r) & ~placed & ~in_ap).sum() / (r <= primer_r).sum())}
    return Scan(out, px, px), done


# =========================================================================== bullets
#
# Synthetic land-engraved-area (LEA) scans of fired bullets, with known
# barrel, land order, lateral placement and damage, drawn as raw scans (the
# grooves, the bullet's curvature, break-off and noise included) so that
# the real preparation pipeline is exercised.

_TAG_BARREL_LAND = 0xB1A7
_TAG_BULLET_SHOT = 0xB5E7
_PATTERN_STEP_UM = 0.25  # the barrel's striae are drawn on this fixed grid, independent of the scan's pixels
_PATTERN_REACH_UM = 3200.0  # a land pattern covers [-_PATTERN_MARGIN_UM, _PATTERN_REACH_UM - margin)
_PATTERN_MARGIN_UM = 400.0
_BULLET_RADIUS_UM = 4500.0  # 9 mm bullet
_GROOVE_SIDE_UM = 250.0  # groove-engraved area shown on each side of the land
_BULLET_NOISE_UM = 0.04


@dataclass(frozen=True)
class BulletTruth:
    """Ground truth of one synthetic bullet (its land scans).

    Attributes
    ----------
    barrel : int
        Barrel seed: bullets with the same value were fired by the same barrel.
    shot : int
        Shot seed.
    n_lands : int
        Lands of the barrel's rifling (= scan positions).
    start_land : int
        Barrel land (0-based) shown at scan position 0; position ``i`` shows
        barrel land ``(start_land + i) % n_lands``.
    barrel_lands : tuple of int or None
        Barrel land at each scan position, ``None`` where the land is missing.
    offsets_um : tuple of float or None
        For each position, where the barrel land's striation pattern has its
        origin in the scan: column ``j`` (centre ``x = (j + 0.5) * pixel``)
        shows the pattern at ``s = x - offset_um`` (across the land, in the
        scan as generated, before any transposition) on the scan's middle row.
    tilt_deg : tuple of float or None
        Tilt of the striae per position (the pattern at row centre ``y`` is
        shifted by ``tan(tilt) * (y - y_middle)``).
    land_edges_um : tuple of (float, float) or None
        LEA boundaries (the shoulders' feet) across the scan.
    missing, damaged : tuple of int
        Positions not scanned; positions with tank rash.
    transposed : bool
        True when the scans were stored with the striae along x.
    difficulty : float
    """

    barrel: int
    shot: int
    n_lands: int
    start_land: int
    barrel_lands: tuple[int | None, ...]
    offsets_um: tuple[float | None, ...]
    tilt_deg: tuple[float | None, ...]
    land_edges_um: tuple[tuple[float, float] | None, ...]
    missing: tuple[int, ...]
    damaged: tuple[int, ...]
    transposed: bool
    difficulty: float

    def phase_to(self, other: "BulletTruth") -> int:
        """The phase at which this bullet's lands match ``other``'s (land ``i`` with ``(i + phase) mod n``)."""
        if other.n_lands != self.n_lands:
            raise ValueError("bullets with different numbers of lands have no common phase")
        return (self.start_land - other.start_land) % self.n_lands


@lru_cache(maxsize=256)
def _land_pattern_grid(barrel: int, land: int) -> np.ndarray:
    """The barrel land's striae on the fixed grid (µm heights, RMS 0.5 µm)."""
    rng = np.random.default_rng([_TAG_BARREL_LAND, barrel, land])
    return _striae_profile(rng, 0.5)


def _striae_profile(rng: np.random.Generator, rms_um: float) -> np.ndarray:
    """A random striation profile on the fixed grid: band-limited texture plus discrete striae.

    Texture: white noise shaped to a 1/f amplitude spectrum between 4 and
    300 µm (Gaussian roll-offs). Striae: sharp grooves and ridges, one every
    40 µm on average, 1.5-6 µm wide, log-normal depths. Equal shares of the
    variance; scaled to ``rms_um``.
    """
    n = int(round(_PATTERN_REACH_UM / _PATTERN_STEP_UM))
    nf = _fast_len(2 * n)
    f = np.fft.rfftfreq(nf, d=_PATTERN_STEP_UM)
    shape = np.exp(-math.pi * (_ISO_ALPHA * 4.0 * f) ** 2) * (1 - np.exp(-math.pi * (_ISO_ALPHA * 300.0 * f) ** 2))
    shape[1:] /= np.sqrt(f[1:] * 300.0)
    tex = np.fft.irfft(np.fft.rfft(rng.standard_normal(nf)) * shape, nf)[:n]
    tex /= tex.std() or 1.0
    k = rng.poisson(_PATTERN_REACH_UM / 40.0)
    pos = rng.uniform(0, _PATTERN_REACH_UM, k)
    width = rng.uniform(1.5, 6.0, k)
    depth = rng.lognormal(0.0, 0.5, k) * rng.choice([-1.0, 1.0], k)
    x = np.arange(n) * _PATTERN_STEP_UM
    st = np.zeros(n)
    for p_, w_, d_ in zip(pos, width, depth):
        lo, hi = int(max(0, (p_ - 4 * w_) / _PATTERN_STEP_UM)), int(min(n, (p_ + 4 * w_) / _PATTERN_STEP_UM + 1))
        st[lo:hi] += d_ * np.exp(-0.5 * ((x[lo:hi] - p_) / w_) ** 2)
    st /= st.std() or 1.0
    prof = (tex + st) / math.sqrt(2.0)
    return (prof * rms_um).astype(np.float64)


def land_pattern(barrel: int, land: int, s_um: np.ndarray) -> np.ndarray:
    """Height (µm) of a barrel land's striation pattern at positions ``s_um`` across the land.

    Positions outside the drawn range (-400 to 2800 µm) repeat the edge values.
    """
    barrel = _seed(barrel, "barrel")
    land = _seed(land, "land")
    g = _land_pattern_grid(barrel, land)
    t = (np.asarray(s_um, dtype=np.float64) + _PATTERN_MARGIN_UM) / _PATTERN_STEP_UM
    return np.interp(t, np.arange(len(g)), g)


def _shot_striae(barrel: int, shot: int, land: int, s_um: np.ndarray) -> np.ndarray:
    """The shot's own striae on a land (unit RMS)."""
    rng = np.random.default_rng([_TAG_BULLET_SHOT, barrel, shot, land])
    g = _striae_profile(rng, 1.0)
    t = (np.asarray(s_um, dtype=np.float64) + _PATTERN_MARGIN_UM) / _PATTERN_STEP_UM
    return np.interp(t, np.arange(len(g)), g)


def bullet_lands(
    barrel: int,
    shot: int,
    *,
    n_lands: int = 6,
    difficulty: float = 0.3,
    pixel_um: float = 1.5625,
    land_width_um: float = 1900.0,
    length_um: float = 500.0,
    start_land: int | None = None,
    missing: tuple[int, ...] = (),
    damaged: tuple[int, ...] = (),
    tilt_deg: float | None = None,
    breakoff: bool = True,
    transposed: bool = False,
) -> tuple[list[Scan | None], BulletTruth]:
    """Draw the land-engraved-area scans of one synthetic fired bullet.

    The model, in µm:

    * **barrel**: each land of the rifling has its own striation pattern
      (:func:`land_pattern`, RMS 0.5 µm): a 1/f texture between 4 and
      300 µm plus discrete striae;
    * **shot**: the pattern lands at a shot-specific lateral place (+-40 µm
      around the land's left shoulder), scaled by 0.8-1.2, weakened over
      part of the land (partial contact; deeper with difficulty), with the
      shot's own striae added (RMS 0.7 ``difficulty`` times the barrel's), and
      tilted by up to 1°; which barrel land is scanned first is
      ``start_land``;
    * **scan**: the bullet's curvature (radius 4.5 mm), a groove-engraved
      area rising 30-60 µm beyond each shoulder with its own rough
      texture, NaN drop-outs on the steep shoulders and a few specks,
      instrument noise (0.04 µm), break-off at the heel (the last rows: a
      rough, lower region 60-160 µm long over part of the width), tank rash
      on ``damaged`` lands (oblique scratches over the nose-side 45 % of the
      scan).

    Parameters
    ----------
    barrel, shot : int
        Seeds (non-negative). Same barrel, same land patterns.
    n_lands : int
        Lands of the rifling, 1 to 16.
    difficulty : float
        0 (shots of a barrel differ only by noise and placement: same-land
        correlation of prepared signatures about 0.98) through 0.3 (about
        0.9) and 0.5 (about 0.8) to 1 (the shot's own striae about as strong
        as the weakened barrel marks: about 0.3-0.5); different lands
        correlate at about 0.2.
    pixel_um : float
        Grid spacing, 0.5 to 4 µm.
    land_width_um : float
        Width of the LEA between the shoulders' feet, 500 to 2600 µm.
    length_um : float
        Length of the scan along the bullet, 100 to 3000 µm.
    start_land : int, optional
        Barrel land shown first; drawn from the shot seed when omitted.
    missing : tuple of int
        Scan positions returned as ``None`` (lands not scanned).
    damaged : tuple of int
        Scan positions with tank rash.
    tilt_deg : float, optional
        Tilt of the striae on every land (default: drawn per land within +-1°).
    breakoff : bool
        Draw break-off at the heel.
    transposed : bool
        Store the scans with the striae along x (rows across the land).

    Returns
    -------
    scans : list of Scan or None
        One per position, heights in µm, ``info["synthetic"] = "bullet"``.
    truth : BulletTruth
    """
    barrel = _seed(barrel, "barrel")
    shot = _seed(shot, "shot")
    n_lands = _count(n_lands, "n_lands", 16)
    difficulty = _number(difficulty, "difficulty", 0.0, 1.0)
    pixel_um = _number(pixel_um, "pixel_um", 0.5, 4.0)
    land_width_um = _number(land_width_um, "land_width_um", 500.0, 2600.0)
    length_um = _number(length_um, "length_um", 100.0, 3000.0)
    for name, pos in (("missing", missing), ("damaged", damaged)):
        for i in pos:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n_lands:
                raise ScanError(None, f"{name} positions must be integers from 0 to {n_lands - 1}, got {i!r}")
    if len(set(missing)) >= n_lands:
        raise ScanError(None, "at least one land must be scanned")
    rng = np.random.default_rng([_TAG_BULLET_SHOT, barrel, shot])
    start = int(rng.integers(n_lands)) if start_land is None else int(_number(start_land, "start_land", 0, n_lands - 1))
    if tilt_deg is not None:
        tilt_deg = _number(tilt_deg, "tilt_deg", -10.0, 10.0)
    scans: list[Scan | None] = []
    lands_t, offs_t, tilts_t, edges_t = [], [], [], []
    for pos in range(n_lands):
        land = (start + pos) % n_lands
        lrng = np.random.default_rng([_TAG_BULLET_SHOT, barrel, shot, land, 1])
        # draw everything, used or not, so that options do not change the other lands
        offset_jitter = lrng.uniform(-40.0, 40.0)
        amp = lrng.uniform(0.8, 1.2)
        tilt = lrng.uniform(-1.0, 1.0) if tilt_deg is None else tilt_deg
        rise_l, rise_r = lrng.uniform(30.0, 60.0, 2)
        if pos in missing:
            scans.append(None)
            lands_t.append(None), offs_t.append(None), tilts_t.append(None), edges_t.append(None)
            continue
        values, offset, edges = _land_scan(barrel, shot, land, lrng, pixel_um=pixel_um, land_width_um=land_width_um,
                                           length_um=length_um, difficulty=difficulty, offset_jitter_um=offset_jitter,
                                           amplitude=amp, tilt_deg=tilt, rises_um=(rise_l, rise_r),
                                           damaged=pos in damaged, breakoff=breakoff)
        if transposed:
            values = values.T
        scans.append(Scan(values=values, pixel_x_um=pixel_um, pixel_y_um=pixel_um, modality="height", source=None,
                          info={"synthetic": "bullet", "barrel": str(barrel), "shot": str(shot),
                                "position": str(pos), "difficulty": f"{difficulty:g}"}))
        lands_t.append(land), offs_t.append(offset), tilts_t.append(float(tilt)), edges_t.append(edges)
    truth = BulletTruth(barrel=barrel, shot=shot, n_lands=n_lands, start_land=start, barrel_lands=tuple(lands_t),
                        offsets_um=tuple(offs_t), tilt_deg=tuple(tilts_t), land_edges_um=tuple(edges_t),
                        missing=tuple(sorted(set(int(i) for i in missing))),
                        damaged=tuple(sorted(set(int(i) for i in damaged))), transposed=bool(transposed),
                        difficulty=difficulty)
    return scans, truth


def _land_scan(barrel, shot, land, rng, *, pixel_um, land_width_um, length_um, difficulty, offset_jitter_um,
               amplitude, tilt_deg, rises_um, damaged, breakoff):
    """One raw LEA scan (rows along the bullet, heel last; columns across the land)."""
    width_um = land_width_um + 2 * _GROOVE_SIDE_UM
    nx = int(round(width_um / pixel_um))
    ny = max(8, int(round(length_um / pixel_um)))
    x = (np.arange(nx) + 0.5) * pixel_um
    y = (np.arange(ny) + 0.5) * pixel_um
    ym = 0.5 * ny * pixel_um
    gl, gr = _GROOVE_SIDE_UM, _GROOVE_SIDE_UM + land_width_um
    offset = gl + offset_jitter_um
    # striae: barrel pattern + the shot's own, evaluated along tilted lines
    s = x[None, :] - offset - math.tan(math.radians(tilt_deg)) * (y[:, None] - ym)
    contact = 1.0 - 0.6 * difficulty * np.clip(0.5 + 0.5 * _smooth_1d(rng, x, 400.0), 0.0, 1.0)
    z = amplitude * contact[None, :] * land_pattern(barrel, land, s)
    if difficulty > 0:
        z += 0.35 * difficulty * _shot_striae(barrel, shot, land, s)
    # curvature and the groove-engraved areas beyond the shoulders
    xc = 0.5 * (gl + gr)
    z += -((x - xc) ** 2) / (2 * _BULLET_RADIUS_UM)
    ramp = 25.0
    left = np.clip((gl - x) / ramp, 0.0, 1.0)
    right = np.clip((x - gr) / ramp, 0.0, 1.0)
    step_l = rises_um[0] * (3 * left**2 - 2 * left**3)
    step_r = rises_um[1] * (3 * right**2 - 2 * right**3)
    gea = (left > 0) | (right > 0)
    z = z + (step_l + step_r)[None, :]
    z[:, gea] += 0.8 * rng.standard_normal((ny, int(gea.sum())))
    # the groove-engraved areas carry their own striae-free waviness; zero the land pattern there
    z[:, gea] -= (amplitude * contact[None, gea] * land_pattern(barrel, land, s[:, gea]))
    # noise
    z += _BULLET_NOISE_UM * rng.standard_normal((ny, nx))
    out = z.astype(np.float64)
    # break-off at the heel (the last rows): rough and lower over part of the width
    if breakoff:
        depth_rows = rng.uniform(60.0, 160.0) / pixel_um
        x0, x1 = sorted(rng.uniform(0, width_um, 2))
        x1 = max(x1, x0 + 0.5 * width_um)
        edge = depth_rows * (0.6 + 0.4 * np.clip(0.5 + 0.5 * _smooth_1d(rng, x, 150.0), 0, 1))
        rows = np.arange(ny)[:, None]
        brk = (rows >= ny - edge[None, :]) & (x[None, :] >= x0) & (x[None, :] <= x1)
        out[brk] = out[brk] - 8.0 + 2.5 * rng.standard_normal(int(brk.sum()))
    # tank rash: oblique scratches over the nose-side part of the scan
    if damaged:
        n_rows = int(0.45 * ny)
        yy, xx = np.mgrid[0:n_rows, 0:nx] * pixel_um
        ang = math.radians(rng.uniform(30.0, 60.0)) * rng.choice([-1.0, 1.0])
        u = xx * math.cos(ang) + yy * math.sin(ang)
        scratch = _smooth_1d(rng, np.arange(0.0, width_um + length_um * 2, 1.0), 6.0)
        t = np.clip(u + length_um, 0, len(scratch) - 1).astype(np.int64)
        out[:n_rows] += 3.0 * scratch[t]
    # drop-outs: steep shoulder walls and a few specks
    steep = ((left > 0.05) & (left < 0.95)) | ((right > 0.05) & (right < 0.95))
    out[:, steep] = np.where(rng.random((ny, int(steep.sum()))) < 0.6, np.nan, out[:, steep])
    for _ in range(int(rng.integers(2, 6))):
        cy, cx, r = rng.uniform(0, ny), rng.uniform(0, nx), rng.uniform(2.0, 8.0) / pixel_um * 2
        r0, r1 = int(max(0, cy - r)), int(min(ny, cy + r + 1))
        c0, c1 = int(max(0, cx - r)), int(min(nx, cx + r + 1))
        yy, xx = np.mgrid[r0:r1, c0:c1]
        out[r0:r1, c0:c1][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = np.nan
    return out, float(offset), (float(gl), float(gr))


def _smooth_1d(rng: np.random.Generator, x: np.ndarray, length_um: float) -> np.ndarray:
    """A smooth random curve of unit RMS with correlation length about ``length_um``, on positions ``x``."""
    span = float(x.max() - x.min()) if len(x) > 1 else 1.0
    n_knots = max(4, int(span / length_um) + 4)
    knots = rng.standard_normal(n_knots)
    t = (x - x.min()) / max(span, 1e-9) * (n_knots - 3) + 1
    return np.interp(t, np.arange(n_knots), knots)
