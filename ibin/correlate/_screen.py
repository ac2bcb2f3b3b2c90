"""Coarse screening of many candidates against one query, before the full comparison.

A search hands a few hundred candidates from the index to the re-rank; the
full comparison (:func:`~ibin.correlate.compare_prepared`, tens of
milliseconds) is kept for the best few dozen. The screen ranks all of them
by an areal cross-correlation on the coarsest grid (50 µm/px by default):

* the query is rotated once per search, on a fixed grid of angles, and the
  spectra of the rotated copies are kept;
* each candidate is transformed once and correlated only at the rotations
  its polar power spectrum suggests (and their 180° twins), plus the
  neighbouring angles of the grid; when the candidate stage already knows
  the rotation (the anchored polar signatures are compared at every
  rotation), that rotation replaces the weaker spectral hypotheses;
* the score is the cross-correlation maximum over translations up to
  ``max_shift_um``, normalised by the surfaces' energies (the cheap score
  of the registration sweep).

Per candidate this costs one forward FFT and about a dozen inverse FFTs of
a small grid, independent of the database size: a quarter to a third of a
millisecond when candidates are screened a few at a time
(:meth:`QueryScreen.score_many`: batched transforms, and the inverse ones
carried to the last axis only for the rows of the shifts searched).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import fft

from ._ncc import inverse_near_zero, rotate_stack

__all__ = ["ScreenParams", "QueryScreen"]


@dataclass(frozen=True)
class ScreenParams:
    """Parameters of the coarse screen.

    Attributes
    ----------
    angle_step_deg : float
        Grid of query rotations (the spectral hypotheses are snapped to it).
    neighbours : int
        Grid angles tried on each side of a hypothesis.
    hypotheses : int
        Spectral rotation hypotheses per candidate (each also at +180°).
    hypotheses_with_hint : int
        Spectral hypotheses kept beside a rotation hint (the hint comes
        from anchored polar signatures, which miss when the firing-pin
        impression is faint: the strongest spectral hypothesis stays as a
        second chance).
    max_shift_um : float
        Largest translation searched.
    """

    angle_step_deg: float = 2.5
    neighbours: int = 1
    hypotheses: int = 3
    hypotheses_with_hint: int = 1
    max_shift_um: float = 1000.0


class QueryScreen:
    """The query side of the screen: rotated copies and their spectra.

    Parameters
    ----------
    query_coarse : ndarray
        The query's coarsest grid (NaN = missing), e.g. ``Pyramid.levels[4]``.
    pixel_um : float
        Spacing of that grid.
    query_spectrum : ndarray
        The query's polar power spectrum (:func:`ibin.features.polar_spectrum`).
    max_candidate_shape : (int, int)
        The largest candidate grid that will be screened (larger ones are
        cropped to it around their centre).
    """

    def __init__(self, query_coarse: np.ndarray, pixel_um: float, query_spectrum: np.ndarray,
                 max_candidate_shape: tuple[int, int], params: ScreenParams | None = None):
        self.p = params or ScreenParams()
        self.pixel_um = float(pixel_um)
        q = np.asarray(query_coarse, dtype=np.float32)
        self.spectrum = np.asarray(query_spectrum, dtype=np.float64)
        self.shift_px = int(math.ceil(self.p.max_shift_um / self.pixel_um))
        h = max(q.shape[0], max_candidate_shape[0])
        w = max(q.shape[1], max_candidate_shape[1])
        self.cand_shape = (int(max_candidate_shape[0]), int(max_candidate_shape[1]))
        self.shape = (fft.next_fast_len(h + self.shift_px, real=True), fft.next_fast_len(w + self.shift_px, real=True))
        self.angles = np.arange(0.0, 360.0, self.p.angle_step_deg)
        rot = np.nan_to_num(rotate_stack(q, self.angles), nan=0.0)
        self.energy = np.einsum("kij,kij->k", rot, rot)
        # correlation c[s] = sum cand(x) q_rot(x - s): conj of the query's spectra
        self.Q = np.conj(fft.rfft2(rot, self.shape, workers=1))

    def _angle_indices(self, hypotheses: Sequence[tuple[float, float]], hints_deg: Sequence[float] = ()) -> np.ndarray:
        n = len(self.angles)
        # rotations of the query that match the candidate
        bases = [b for h, _ in hypotheses for b in (h, h + 180.0)]
        bases += [-float(h) for h in hints_deg]  # a hint turns the candidate onto the query
        out = set()
        for base in bases:
            k = int(round((base % 360.0) / self.p.angle_step_deg)) % n
            for d in range(-self.p.neighbours, self.p.neighbours + 1):
                out.add((k + d) % n)
        return np.array(sorted(out), dtype=np.int64)

    def score(self, candidate_coarse: np.ndarray, candidate_spectrum: np.ndarray,
              rotation_hint_deg: float | Sequence[float] | None = None) -> tuple[float, float]:
        """Screen score of one candidate: ``(ccf, rotation_deg)``.

        ``rotation_deg`` is the rotation of the candidate onto the query
        (the convention of :class:`~ibin.correlate.Alignment`), usable as a
        hint for the full registration. ``rotation_hint_deg``, in the same
        convention, is one or more rotations known from elsewhere (the
        polar signatures): each is tried with its neighbours on the grid,
        beside the strongest spectral hypothesis. Safe to call from several
        threads.
        """
        return self.score_many([(candidate_coarse, candidate_spectrum, rotation_hint_deg)])[0]

    def score_many(self, candidates: Sequence[tuple[np.ndarray, np.ndarray, float | Sequence[float] | None]],
                   *, batch: int = 8) -> list[tuple[float, float]]:
        """:meth:`score` of many ``(coarse, spectrum, rotation hint)`` candidates, in batches of FFTs.

        The same scores as one by one: each candidate's transform and
        correlations are the same, only gathered into fewer, larger FFT
        calls (``batch`` candidates each: their transforms still fit in
        the processor's cache).
        """
        from ..features._spectrum import rotation_hypotheses_many

        out: list[tuple[float, float]] = [(-1.0, 0.0)] * len(candidates)
        ch, cw = self.cand_shape
        live, grids, energy, hints, spectra = [], [], [], [], []
        for i, (coarse, spectrum, hint) in enumerate(candidates):
            c = np.nan_to_num(np.asarray(coarse, dtype=np.float32), nan=0.0)
            if c.shape[0] > ch or c.shape[1] > cw:  # keep the centre of an oversized candidate
                y0 = max(0, (c.shape[0] - ch) // 2)
                x0 = max(0, (c.shape[1] - cw) // 2)
                c = c[y0 : y0 + ch, x0 : x0 + cw]
            ec = float(np.einsum("ij,ij->", c, c))
            if ec <= 0:
                continue
            live.append(i)
            grids.append(c)
            energy.append(ec)
            hints.append(() if hint is None else tuple(np.atleast_1d(np.asarray(hint, dtype=np.float64))))
            spectra.append(np.asarray(spectrum))
        if not live:
            return out
        counts = [self.p.hypotheses_with_hint if len(h) else self.p.hypotheses for h in hints]
        hyps = rotation_hypotheses_many(np.stack(spectra), self.spectrum, count=counts)
        idx = [self._angle_indices(h, t) for h, t in zip(hyps, hints)]
        for s in range(0, len(live), batch):
            e = min(len(live), s + batch)
            # zero-padded to the FFT shape either way: each candidate's transform is the same as alone
            g = np.zeros((e - s, ch, cw), np.float32)
            for j in range(s, e):
                g[j - s, : grids[j].shape[0], : grids[j].shape[1]] = grids[j]
            C = fft.rfft2(g, self.shape, workers=1)
            prod = np.concatenate([C[j - s][None] * self.Q[idx[j]] for j in range(s, e)])
            peak = inverse_near_zero(prod, self.shape, self.shift_px).reshape(len(prod), -1).max(axis=1)
            at = 0
            for j in range(s, e):
                k_j = len(idx[j])
                best = peak[at : at + k_j] / np.sqrt(energy[j] * np.maximum(self.energy[idx[j]], 1e-12))
                at += k_j
                k = int(np.argmax(best))
                # the query was rotated by angles[idx[k]] onto the candidate: the candidate onto the query is the opposite
                rot = (-self.angles[idx[j][k]] + 180.0) % 360.0 - 180.0
                out[live[j]] = (float(best[k]), float(rot))
        return out
