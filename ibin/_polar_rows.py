"""The polar signatures of a descriptor space grouped by anchor, kept up to date as the index grows.

The candidate stage (:func:`ibin.engine._polar_candidates_many`) reads, for each
anchor, the rows of the space's signature matrix that belong to it, their
first harmonics in 8 bits (:class:`~ibin.features._polar.CoarseSignatures`)
and their exhibit rowids sorted for lookups. Deriving these from a matrix of
a million signatures takes ~0.3-0.5 s in two threads (most of it quantising). An
ingest adds rows at the end of the matrix and changes none before them (a
vector id names one exhibit's one signature for good, and the catalog never
reuses a rowid), so :meth:`PolarRows.update` derives only the new rows; any
other change (a deletion, a reindex) is told apart by comparing the ids, and
the whole is derived again.
"""

from __future__ import annotations

import numpy as np

from .features._polar import CoarseSignatures, PolarParams
from .index._vectors import growth_room

__all__ = ["PolarRows"]


class _Growing:
    """An array that grows at its end, with an eighth of headroom, so that adding a few rows copies nothing.

    Views handed out before stay valid: rows are written only past their
    end, and a reallocated buffer leaves the old one to the views.
    """

    def __init__(self, a: np.ndarray, headroom: int):
        self.n = len(a)
        b = a.base
        if isinstance(b, np.ndarray) and b.dtype == a.dtype and b.shape[1:] == a.shape[1:] \
                and len(b) >= self.n + headroom and b.flags.c_contiguous and a.ctypes.data == b.ctypes.data:
            self._buf = b  # ``a`` is the start of a larger buffer (``CoarseSignatures.from_vectors(headroom=)``)
        else:
            self._buf = np.empty((self.n + headroom,) + a.shape[1:], a.dtype)
            self._buf[: self.n] = a

    def extend(self, more: np.ndarray) -> None:
        need = self.n + len(more)
        if need > len(self._buf):
            buf = np.empty((need + growth_room(need),) + self._buf.shape[1:], self._buf.dtype)
            buf[: self.n] = self._buf[: self.n]
            self._buf = buf
        self._buf[self.n : need] = more
        self.n = need

    @property
    def array(self) -> np.ndarray:
        v = self._buf[: self.n]
        v.flags.writeable = False
        return v


class _Anchor:
    """One anchor's rows: positions in the matrix, 8-bit first harmonics, rowids sorted (and the sorting order)."""

    def __init__(self, rowids: np.ndarray, x: np.ndarray, positions: np.ndarray, pp: PolarParams, workers: int = 1):
        self.pp = pp
        spare = growth_room(len(positions))
        coarse = self._coarse(x, positions, spare, workers)
        self.positions = _Growing(np.asarray(positions, dtype=np.int64), spare)
        self.codes, self.scale = _Growing(coarse.codes, spare), _Growing(coarse.scale, spare)
        self._sort(rowids)

    def _coarse(self, x: np.ndarray, positions: np.ndarray, headroom: int = 0, workers: int = 1) -> CoarseSignatures:
        return CoarseSignatures.from_vectors(x, self.pp.rings_kept, self.pp.harmonics, rows=positions,
                                             headroom=headroom, workers=workers)

    def _sort(self, rowids: np.ndarray) -> None:
        ids = rowids[self.positions.array]
        order = np.argsort(ids, kind="stable")
        spare = growth_room(len(ids))
        self.sorted_ids, self.order = _Growing(ids[order], spare), _Growing(order, spare)

    def extend(self, rowids: np.ndarray, x: np.ndarray, positions: np.ndarray, workers: int = 1) -> None:
        """Add rows at ``positions`` (ascending, past every row held)."""
        coarse = self._coarse(x, positions, workers=workers)
        k0 = self.positions.n
        self.positions.extend(positions)
        self.codes.extend(coarse.codes)
        self.scale.extend(coarse.scale)
        ids = rowids[positions]
        order = np.argsort(ids, kind="stable")
        if self.sorted_ids.n == 0 or ids[order[0]] >= self.sorted_ids.array[-1]:
            self.sorted_ids.extend(ids[order])  # new exhibits come last (the usual case): what a full sort gives
            self.order.extend(k0 + order)
        else:
            self._sort(rowids)

    def view(self) -> tuple[np.ndarray, CoarseSignatures, np.ndarray, np.ndarray]:
        return (self.positions.array, CoarseSignatures(self.codes.array, self.scale.array),
                self.sorted_ids.array, self.order.array)


class PolarRows:
    """A space's signature rows grouped by anchor (``parts``), derived once and extended as rows are added.

    Parameters
    ----------
    rowids, parts : ndarray (n,) int64
        Exhibit rowid and anchor part of each row of ``x``
        (:meth:`ibin.index.Database.space_matrix`).
    x : ndarray (n, 2 rings harmonics) float32
        The signature vectors (:func:`~ibin.features._polar.to_vector`), read in place.
    params : PolarParams, optional
    workers : int
        Threads deriving the 8-bit harmonics.
    """

    def __init__(self, rowids: np.ndarray, parts: np.ndarray, x: np.ndarray, params: PolarParams | None = None,
                 workers: int = 1):
        self.pp = params or PolarParams()
        self.rowids, self.parts = rowids, parts
        self.anchors: dict[int, _Anchor] = {}
        self._add(x, 0, workers)

    def _add(self, x: np.ndarray, start: int, workers: int = 1) -> None:
        tail = self.parts[start:]
        for part in np.unique(tail):
            positions = start + np.flatnonzero(tail == part)
            entry = self.anchors.get(int(part))
            if entry is None:
                self.anchors[int(part)] = _Anchor(self.rowids, x, positions, self.pp, workers)
            else:
                entry.extend(self.rowids, x, positions, workers)

    def __len__(self) -> int:
        return len(self.rowids)

    def update(self, rowids: np.ndarray, parts: np.ndarray, x: np.ndarray, workers: int = 1) -> bool:
        """Bring these rows up to the space's current matrix; False when that needs a new :class:`PolarRows`.

        True when the matrix is the one held, or the one held with rows
        added at its end (only those are derived); False after any other
        change (rows removed or reordered).
        """
        if rowids is self.rowids and parts is self.parts:  # the same arrays (``Database.space_matrix`` of an unchanged index)
            return True
        n0 = len(self.rowids)
        if len(rowids) < n0 or not (np.array_equal(rowids[:n0], self.rowids) and np.array_equal(parts[:n0], self.parts)):
            return False
        if len(rowids) > n0:
            self.rowids, self.parts = rowids, parts
            self._add(x, n0, workers)
        return True

    def by_anchor(self) -> dict[int, tuple[np.ndarray, CoarseSignatures, np.ndarray, np.ndarray]]:
        """``{part: (positions, coarse, sorted_rowids, order)}`` (read-only views), as :func:`ibin.engine._polar_by_anchor` returns."""
        return {part: a.view() for part, a in self.anchors.items()}
