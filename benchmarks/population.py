"""Synthetic populations for the scale benchmarks.

Three kinds of exhibits, cheapest last; :mod:`benchmarks.scale` says which
measurement uses which:

1. **Full pipeline** (:func:`build_database`): synthetic cartridge cases
   (``ibin.synth``, processed scans at 12.5 µm/px, default difficulty)
   through the real preparation and ingest, into a real database directory.
   ``shots`` cartridge cases per firearm, so every exhibit has true mates.
2. **Signatures only** (:func:`coarse_signatures`): synthetic cartridge cases
   drawn at 25 µm/px and reduced to the two index signatures (anchored polar
   and spectral) by the same functions as the real preparation, run on the
   25 µm grid (breech-face region, high-pass at the long cut-off, edge
   erosion, unit RMS). :func:`validate_coarse` measures how close these
   signatures are to the full pipeline's for the same scans.
3. **Perturbed copies** (:func:`perturbed_copies`): further "shots" of the
   firearms of kind 2, made in signature space: a real signature turned by a
   random rotation plus complex Gaussian noise of the energy that makes its
   similarity to the original equal to the measured shot-to-shot
   similarity. They are not scans: they load the index with realistic
   numbers of near neighbours, but add no new firearm textures.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

CALIBERS = [("9mm Luger", 0.55), (".40 S&W", 0.15), (".45 Auto", 0.12), (".380 Auto", 0.10), (".25 Auto", 0.08)]
AGENCIES = [f"agency-{i:02d}" for i in range(20)]


def metadata_for(firearm: int, shot: int) -> dict[str, str]:
    """Deterministic, realistic-looking metadata (caliber by firearm; agency and date by shot)."""
    rng = np.random.default_rng([firearm, 7])
    cal = rng.choice(len(CALIBERS), p=[p for _, p in CALIBERS])
    rng2 = np.random.default_rng([firearm, shot, 11])
    year = 2015 + int(rng2.integers(0, 11))
    day = int(rng2.integers(1, 366))
    date = np.datetime64(f"{year}-01-01") + np.timedelta64(day - 1, "D")
    return {"caliber": CALIBERS[cal][0], "agency": AGENCIES[int(rng2.integers(0, len(AGENCIES)))], "date": str(date)}


# ------------------------------------------------------------------ 1. full pipeline


def _prepare_one(args):
    firearm, shot, pixel_um, difficulty = args
    from ibin.features import prepare_cartridge
    from ibin.synth import cartridge_case

    scan, truth = cartridge_case(firearm, shot, pixel_um=pixel_um, difficulty=difficulty)
    prep = prepare_cartridge(scan)
    return firearm, shot, prep


def build_database(db_path: Path, n_firearms: int, shots: int, *, first_firearm: int = 10_000_000,
                   pixel_um: float = 12.5, difficulty: float = 0.5, workers: int = 2, progress=None) -> int:
    """Ingest ``n_firearms * shots`` synthetic cartridge cases through the real pipeline.

    Preparation runs in ``workers`` processes; the database is written by
    this process through :func:`ibin.engine.add_prepared` (the same path as
    ``ibin ingest`` after preparation). Resumable: exhibits already on file
    are skipped. Returns the number added.
    """
    from multiprocessing import get_context

    from ibin.engine import add_prepared, open_database

    db = open_database(db_path, create=True)
    todo = [(first_firearm + f, s, pixel_um, difficulty) for f in range(n_firearms) for s in range(shots)]
    have = {r.id for r in db.list()}
    todo = [t for t in todo if _syn_id(t[0], t[1]) not in have]
    added = 0
    with get_context("fork").Pool(workers) as pool:
        for i, (firearm, shot, prep) in enumerate(pool.imap(_prepare_one, todo, chunksize=8)):
            add_prepared(db, prep, id=_syn_id(firearm, shot), kind="cartridge",
                         source_name=f"synthetic-{firearm}-{shot}", sha256=hashlib.sha256(f"synthetic:{firearm}:{shot}:{pixel_um}:{difficulty}".encode()).hexdigest(),
                         metadata=metadata_for(firearm, shot) | {"firearm": f"syn-{firearm}"}, fsync=False)
            added += 1
            if progress and (i + 1) % 200 == 0:
                progress(i + 1, len(todo))
    db.close()
    return added


def _syn_id(firearm: int, shot: int) -> str:
    return f"syn-{firearm}-{shot}"


# ------------------------------------------------------------------ 2. signatures only


@dataclass(frozen=True)
class Signatures:
    firearm: int
    shot: int
    polar: np.ndarray  # (anchors, rings_kept, harmonics) complex64
    anchors: tuple[str, ...]
    spectral: np.ndarray  # (d,) float32


def coarse_signatures(scan) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """The index signatures of a scan computed on its own (coarse) grid.

    The functions of the real preparation (breech-face region, Gaussian
    high-pass at the long cut-off, polar spectrum, anchored polar
    signature) applied to a 25 µm/px scan, skipping the canonical 12.5 µm
    grid (whose short wavelengths the signatures do not use).
    """
    from ibin.features import CartridgeParams
    from ibin.features._cartridge import _erode
    from ibin.features._filters import gaussian_lowpass
    from ibin.features._polar import anchors_of, polar_signature
    from ibin.features._roi import find_breech_face
    from ibin.features._spectrum import polar_spectrum, spectrum_descriptor

    p = CartridgeParams()
    px = scan.pixel_x_um
    v = np.array(scan.values, dtype=np.float64)
    roi = find_breech_face(v, px, modality=scan.modality)
    v[~roi.mask] = np.nan
    hp = v - gaussian_lowpass(v, px, p.long_cutoff_um)
    m = _erode(np.isfinite(hp), max(1, int(round(p.edge_erosion_um / px))))
    hp[~m] = np.nan
    hp /= float(np.sqrt(np.nanmean(hp**2)))
    spec = polar_spectrum(hp, px, short_wavelength_um=max(1.25 * p.short_cutoff_um, 5 * p.pixel_um),
                          long_wavelength_um=p.long_cutoff_um, n_rings=p.spectrum_rings,
                          n_orientations=p.spectrum_orientations)
    desc = spectrum_descriptor(spec, harmonics=p.spectrum_harmonics)
    anchors = anchors_of(np.isfinite(hp), px, roi.firing_pin, roi.primer)
    polar = np.stack([polar_signature(hp, px, (x, y)) for _, x, y in anchors])
    return polar, tuple(a for a, _, _ in anchors), desc


def _sig_one(args):
    firearm, shot, difficulty = args
    from ibin.synth import cartridge_case

    scan, _ = cartridge_case(firearm, shot, pixel_um=25.0, difficulty=difficulty)
    polar, anchors, spec = coarse_signatures(scan)
    return Signatures(firearm, shot, polar, anchors, spec)


def signature_population(n_firearms: int, shots: int, *, first_firearm: int = 20_000_000, difficulty: float = 0.5,
                         workers: int = 2) -> Iterator[Signatures]:
    """Signatures-only synthetic exhibits (kind 2), in firearm order."""
    from multiprocessing import get_context

    todo = [(first_firearm + f, s, difficulty) for f in range(n_firearms) for s in range(shots)]
    with get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_sig_one, todo, chunksize=16)


def validate_coarse(n: int = 40, *, first_firearm: int = 30_000_000) -> dict:
    """Agreement between signatures-only (25 µm) and full-pipeline (12.5 µm) signatures of the same scans."""
    from ibin.features import prepare_cartridge, rotation_max
    from ibin.synth import cartridge_case

    pol, spe = [], []
    for f in range(n):
        full = prepare_cartridge(cartridge_case(first_firearm + f, 0, pixel_um=12.5)[0])
        polar, anchors, spec = coarse_signatures(cartridge_case(first_firearm + f, 0, pixel_um=25.0)[0])
        if anchors[0] == full.anchors[0]:
            pol.append(float(rotation_max(full.polar[0], polar[0][None])[0][0]))
        spe.append(float(full.descriptor @ spec))
    return {"n": n, "polar_same_anchor": len(pol), "polar_similarity_median": float(np.median(pol)),
            "polar_similarity_p10": float(np.percentile(pol, 10)), "spectral_similarity_median": float(np.median(spe))}


# ------------------------------------------------------------------ 3. perturbed copies


def perturbed_copies(polar: np.ndarray, spectral: np.ndarray, n: int, *, polar_similarity: float,
                     spectral_similarity: float, seed: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Further "shots" in signature space: ``(source index, polar, spectral)``.

    ``polar`` (N, rings, harmonics) and ``spectral`` (N, d) of the signature
    population; each copy takes a random source, turns its polar signature
    by a random angle and adds complex Gaussian noise so that its expected
    similarity to the source is ``polar_similarity`` (likewise for the
    spectral descriptor).
    """
    from ibin.features import rotate_signature

    rng = np.random.default_rng(seed)
    N = len(polar)

    def noisy(x: np.ndarray, sim: float, cplx: bool) -> np.ndarray:
        # x has unit norm; y = x + e, ||e||^2 = 1/sim^2 - 1 gives <x, y/||y||> = sim on average
        s2 = max(1.0 / sim**2 - 1.0, 0.0)
        shape = x.shape
        if cplx:
            e = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / math.sqrt(2 * x.size)
        else:
            e = rng.standard_normal(shape) / math.sqrt(x.size)
        y = x + math.sqrt(s2) * e
        return (y / np.linalg.norm(y)).astype(x.dtype)

    for _ in range(n):
        i = int(rng.integers(0, N))
        p = np.stack([noisy(rotate_signature(c, float(rng.uniform(0, 360))), polar_similarity, True) for c in polar[i]])
        yield i, p, noisy(spectral[i], spectral_similarity, False)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
