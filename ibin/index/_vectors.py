"""FAISS vector indexes, one per descriptor space, persisted next to the catalog.

The catalog is the source of truth for which vectors exist; an index file is
a cache of it. Each file records the highest vector id it holds (its
watermark); on opening, vectors added since are read from the catalog and
added in memory, and deleted ones are filtered by the catalog at search
time. So an index file that is old, or missing, is never wrong, only
slower, and ``ibin reindex`` can always rebuild it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

__all__ = ["VectorIndex", "faiss_version"]

log = logging.getLogger(__name__)


def _faiss():
    import faiss  # imported lazily: loading FAISS is not free

    return faiss


def faiss_version() -> str:
    return getattr(_faiss(), "__version__", "unknown")


class VectorIndex:
    """Inner-product search over L2-normalised descriptors of one space.

    Parameters
    ----------
    dim : int
        Descriptor length.
    factory : str
        FAISS ``index_factory`` description of the storage (``"Flat"`` =
        exact search); ids are attached with an ID map.
    """

    def __init__(self, dim: int, factory: str = "Flat"):
        faiss = _faiss()
        self.dim = int(dim)
        self.factory = factory
        base = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        self.index = faiss.IndexIDMap2(base)
        self.watermark = 0

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        x = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        if len(ids) == 0:
            return
        if not self.index.is_trained:
            self.index.train(x)
        self.index.add_with_ids(x, ids)
        self.watermark = max(self.watermark, int(ids.max()))

    def search(self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner products; ``(scores float32 (n, k), ids int64 (n, k))``, -1 = empty slot.

        ``allowed`` restricts the search to these ids inside FAISS (an ID
        selector), so a filtered search still returns ``k`` results when
        ``k`` allowed vectors exist.
        """
        faiss = _faiss()
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, int(k))
        if self.ntotal == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        params = None
        if allowed is not None:
            allowed = np.ascontiguousarray(np.unique(allowed), dtype=np.int64)
            if len(allowed) == 0:
                return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
            sel = faiss.IDSelectorBatch(allowed)
            params = faiss.SearchParameters(sel=sel)
        D, I = self.index.search(q, k, params=params)
        D = np.where(I < 0, -np.inf, D).astype(np.float32)
        return D, I.astype(np.int64)

    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of an exact (Flat) index, without copying the vectors.

        For descriptor comparisons that are not plain inner products (e.g.
        a maximum over rotations), computed outside FAISS.
        """
        faiss = _faiss()
        base = faiss.downcast_index(self.index.index)
        if not isinstance(base, faiss.IndexFlat):
            raise TypeError(f"matrix() needs a Flat index, this one is {self.factory!r}")
        n, d = base.ntotal, base.d
        x = faiss.rev_swig_ptr(base.get_xb(), n * d).reshape(n, d) if n else np.empty((0, d), np.float32)
        ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        return ids, x

    def remove(self, ids: np.ndarray) -> None:
        faiss = _faiss()
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids):
            self.index.remove_ids(faiss.IDSelectorBatch(ids))

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write atomically: a temporary file renamed over ``path`` (and its ``.json`` sidecar)."""
        faiss = _faiss()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        faiss.write_index(self.index, str(tmp))
        _fsync(tmp)
        meta = {"dim": self.dim, "factory": self.factory, "watermark": self.watermark, "ntotal": self.ntotal,
                "faiss": faiss_version()}
        mtmp = path.with_name(path.name + f".json.tmp-{os.getpid()}")
        mtmp.write_text(json.dumps(meta, indent=1))
        _fsync(mtmp)
        # the sidecar goes first: an index file newer than its sidecar would
        # only re-add vectors it already has, which load() detects
        os.replace(mtmp, path.with_name(path.name + ".json"))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int, factory: str) -> "VectorIndex | None":
        """Read an index file; None when it is missing, damaged or of another shape."""
        faiss = _faiss()
        path = Path(path)
        side = path.with_name(path.name + ".json")
        try:
            meta = json.loads(side.read_text())
            index = faiss.read_index(str(path))
        except FileNotFoundError:
            return None
        except Exception as e:  # a damaged cache is rebuilt from the catalog
            log.warning("%s: index file unreadable (%s); it will be rebuilt", path, e)
            return None
        if int(meta.get("dim", -1)) != dim or meta.get("factory") != factory or index.d != dim:
            return None
        if int(meta.get("ntotal", -1)) != index.ntotal:
            log.warning("%s: index file and its sidecar disagree; it will be rebuilt", path)
            return None
        self = cls.__new__(cls)
        self.dim = dim
        self.factory = factory
        self.index = index if isinstance(index, faiss.IndexIDMap2) else faiss.IndexIDMap2(index)
        self.watermark = int(meta.get("watermark", 0))
        return self


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
