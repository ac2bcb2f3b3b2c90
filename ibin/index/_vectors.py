"""FAISS vector indexes, one per descriptor space, persisted next to the catalog.

The catalog is the source of truth for which vectors exist; an index file is
a cache of it. Each file records the highest vector id it holds (its
watermark); on opening, vectors added since are read from the catalog and
added in memory, and deleted ones are filtered by the catalog at search
time. So an index file that is old, or missing, is never wrong, only
slower, and ``ibin reindex`` can always rebuild it. The file's header also
records the SHA-256 of the index and the catalog it belongs to; a file that
does not match them (damaged, or of another database) is not used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import re
import secrets
import struct
from pathlib import Path

import numpy as np

from ._faults import point
from .._fs import fsync_dir, write_all

__all__ = ["VectorIndex", "faiss_version"]

log = logging.getLogger(__name__)


#: Training points per inverted list of an IVF index.
TRAIN_POINTS_PER_LIST = 64


def _faiss():
    import faiss  # imported lazily: loading FAISS is not free

    return faiss


def faiss_version() -> str:
    return getattr(_faiss(), "__version__", "unknown")


class _Pinned:
    """An array interface over FAISS-owned memory that holds a reference to its owner."""

    def __init__(self, view: np.ndarray, owner) -> None:
        self.__array_interface__ = view.__array_interface__
        self._owner = owner


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
        #: Vectors added since the index was read from or written to its file.
        self.unsaved = 0
        #: Bumped by every change to the vectors held (add, remove).
        self.version = 0

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def nprobe(self) -> int:
        """Inverted lists visited per query for an IVF index (0 for exact indexes).

        A sixteenth of the lists, at least 8: measured in
        ``benchmarks/results/scale.json`` against exact search.
        """
        faiss = _faiss()
        base = faiss.downcast_index(self.index.index)
        if isinstance(base, faiss.IndexIVF):
            return max(8, base.nlist // 16)
        return 0

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        x = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        if len(ids) == 0:
            return
        if not self.index.is_trained:
            faiss = _faiss()
            base = faiss.downcast_index(self.index.index)
            if isinstance(base, faiss.IndexIVF):
                # k-means on at most 64 points per list (FAISS samples them; it
                # warns below 39): a quarter of its default work at 1M vectors
                base.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
            self.index.train(x)
        self.index.add_with_ids(x, ids)
        self.watermark = max(self.watermark, int(ids.max()))
        self.unsaved += len(ids)
        self.version += 1

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
        sel = None
        if allowed is not None:
            allowed = np.ascontiguousarray(np.unique(allowed), dtype=np.int64)
            if len(allowed) == 0:
                return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
            sel = faiss.IDSelectorBatch(allowed)
        nprobe = self.nprobe
        if nprobe:
            params = faiss.SearchParametersIVF(nprobe=nprobe, sel=sel) if sel is not None else faiss.SearchParametersIVF(nprobe=nprobe)
        else:
            params = faiss.SearchParameters(sel=sel) if sel is not None else None
        D, I = self.index.search(q, k, params=params)
        D = np.where(I < 0, -np.inf, D).astype(np.float32)
        return D, I.astype(np.int64)

    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of an exact (Flat) index, without copying the vectors.

        For descriptor comparisons that are not plain inner products (e.g.
        a maximum over rotations), computed outside FAISS. The array keeps
        the index's memory alive (it stays valid after the database is
        closed) and is read-only; it shows the vectors as they were: adding
        to the index may move them, so ask again after a change.
        """
        faiss = _faiss()
        base = faiss.downcast_index(self.index.index)
        if not isinstance(base, faiss.IndexFlat):
            raise TypeError(f"matrix() needs a Flat index, this one is {self.factory!r}")
        n, d = base.ntotal, base.d
        if n:
            view = faiss.rev_swig_ptr(base.get_xb(), n * d).reshape(n, d)
            x = np.asarray(_Pinned(view, self.index))  # its base holds the FAISS index
            x.flags.writeable = False
        else:
            x = np.empty((0, d), np.float32)
        ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        return ids, x

    def remove(self, ids: np.ndarray) -> None:
        faiss = _faiss()
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids):
            self.index.remove_ids(faiss.IDSelectorBatch(ids))
            self.version += 1

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, *, catalog_id: str | None = None) -> None:
        """Write atomically: a temporary file, fsynced, renamed over ``path``.

        The file is an ibin header followed by the FAISS index (see
        :func:`inspect`): its watermark, catalog id, size and SHA-256 travel
        in the same file as the vectors, so one rename replaces both and no
        crash or concurrent save can pair an index with another's watermark.
        ``catalog_id`` ties the file to one database.

        FAISS writes the index straight into the file, hashed as it goes,
        after :data:`_HEADER_BYTES` left for the header, which is written
        last (its JSON padded with spaces to fill them). Serialising to
        memory first took 18 s for a million 512-dimensional vectors.
        """
        faiss = _faiss()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_temporaries(path.parent)
        tmp = _tmp_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.lseek(fd, _HEADER_BYTES, os.SEEK_SET)
                sha, size = hashlib.sha256(), 0

                def sink(chunk: bytes) -> int:
                    nonlocal size
                    sha.update(chunk)
                    write_all(fd, chunk)
                    size += len(chunk)
                    return len(chunk)

                faiss.write_index(self.index, faiss.PyCallbackIOWriter(sink))
                header = {"format": "ibin-index", "version": 1, "dim": self.dim, "factory": self.factory,
                          "watermark": self.watermark, "ntotal": self.ntotal, "faiss": faiss_version(),
                          "bytes": size, "sha256": sha.hexdigest(), "catalog": catalog_id}
                head = json.dumps(header, sort_keys=True).encode()
                room = _HEADER_BYTES - 8
                if len(head) > room:
                    raise ValueError(f"index header of {len(head)} bytes does not fit in {room}")
                os.lseek(fd, 0, os.SEEK_SET)
                write_all(fd, _MAGIC + struct.pack("<I", room) + head + b" " * (room - len(head)))
                os.fsync(fd)
            finally:
                os.close(fd)
            point("index.tmp")
            os.replace(tmp, path)
            point("index.renamed")
            fsync_dir(path.parent)
            self.unsaved = 0
        finally:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
        old_side = path.with_name(path.name + ".json")  # sidecar of the format before version 1
        if old_side.exists():
            try:
                old_side.unlink()
            except OSError:
                pass

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int, factory: str | None, *, catalog_id: str | None = None,
             max_id: int | None = None) -> "VectorIndex | None":
        """Read an index file; None when it is missing, damaged, of another shape or another database.

        ``factory=None`` accepts the file's own kind of index.

        ``max_id`` is the largest vector id the catalog can have issued: an
        index holding a larger one was not made from this catalog.
        """
        got, problem = inspect(path)
        if got is None:
            if problem is not None:
                log.warning("%s: %s; it will be rebuilt from the catalog", path, problem)
            return None
        index, meta = got
        if factory is None:
            factory = str(meta.get("factory"))
        if int(meta.get("dim", -1)) != dim or meta.get("factory") != factory or index.d != dim:
            return None
        if catalog_id is not None and meta.get("catalog") != catalog_id:
            log.warning("%s: index file was made for another database; it will be rebuilt", path)
            return None
        watermark = int(meta.get("watermark", 0))
        if max_id is not None and watermark > max_id:
            log.warning("%s: index file is ahead of the catalog; it will be rebuilt", path)
            return None
        self = cls.__new__(cls)
        self.dim = dim
        self.factory = factory
        self.index = index
        self.watermark = watermark
        self.unsaved = 0
        self.version = 0
        return self

    def ids(self) -> np.ndarray:
        """The vector ids held (int64)."""
        return _faiss().vector_to_array(self.index.id_map).astype(np.int64)

    def stored_vectors(self) -> np.ndarray | None:
        """The stored vectors in :meth:`ids` order, for exact (``Flat``) storage; None otherwise."""
        faiss = _faiss()
        base = faiss.downcast_index(self.index.index)
        if not isinstance(base, faiss.IndexFlat):
            return None
        return faiss.vector_to_array(base.codes).view(np.float32).reshape(-1, self.dim)


_MAGIC = b"IBX1"
#: Bytes before the FAISS payload in a saved index file: the magic, the header
#: length and the header JSON padded with spaces (a multiple of 64).
_HEADER_BYTES = 4096


def inspect(path: str | os.PathLike) -> tuple[tuple[object, dict] | None, str | None]:
    """Read an index file, verifying its header, size and SHA-256.

    File layout: ``b"IBX1"``, header length (uint32 LE), header JSON
    (``dim``, ``factory``, ``watermark``, ``ntotal``, ``catalog``,
    ``bytes``, ``sha256`` of the payload; :meth:`VectorIndex.save` pads it
    with spaces to :data:`_HEADER_BYTES`), zero padding to a multiple of 64,
    then the FAISS index as ``faiss.write_index`` writes it.

    The file is memory-mapped: the checksum is taken over the mapped pages
    and FAISS then reads the verified payload from them in blocks, so the
    file is not copied in memory on the way (reading through an in-memory
    copy took 20 s for a million 512-dimensional vectors).

    Returns
    -------
    ((index, header) or None, problem or None)
        ``(None, None)`` when there is no index file, or one in the format
        of ibin 0.1 (a bare FAISS file with a JSON sidecar, which is
        rebuilt): neither is a problem.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"index file unreadable ({e.strerror or e})"
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        except (OSError, ValueError) as e:
            return None, f"index file unreadable ({e})"
        try:
            return _inspect_mapped(path, mm if mm is not None else b"")
        finally:
            if mm is not None:
                mm.close()


def _inspect_mapped(path: Path, raw) -> tuple[tuple[object, dict] | None, str | None]:
    """:func:`inspect` of a file's bytes (a memory map); keeps no view of them."""
    faiss = _faiss()
    if raw[:4] != _MAGIC:
        if raw[:4] in (b"IxM2", b"IxMp") and path.with_name(path.name + ".json").exists():
            return None, None  # ibin 0.1 format: a cache without checksum, simply rebuilt
        return None, "index file does not start with its magic bytes (damaged, or not an ibin index file)"
    try:
        (hlen,) = struct.unpack("<I", raw[4:8])
        meta = json.loads(raw[8 : 8 + hlen].decode())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        start = 8 + hlen + (-(8 + hlen)) % 64
        nbytes, sha = int(meta["bytes"]), str(meta["sha256"])
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        return None, f"index file header damaged ({e})"
    held = len(raw) - start
    if held != nbytes:
        return None, f"index file holds {max(held, 0)} bytes of index, its header says {nbytes}: damaged"
    with memoryview(raw) as view, view[start:] as payload:
        digest = hashlib.sha256(payload).hexdigest()
    if digest != sha:
        return None, "index file damaged: its content does not match the SHA-256 in its header"
    pos = start

    def source(n: int) -> bytes:
        nonlocal pos
        chunk = raw[pos : pos + n]
        pos += len(chunk)
        return chunk

    try:
        index = faiss.read_index(faiss.PyCallbackIOReader(source))
    except Exception as e:  # noqa: BLE001 - FAISS raises RuntimeError with its own text
        return None, f"index file unreadable by FAISS ({e})"
    if not isinstance(index, faiss.IndexIDMap2):
        return None, "index file holds vectors without ids"
    if int(meta.get("ntotal", -1)) != index.ntotal:
        return None, "index file header and content disagree on the number of vectors"
    return (index, meta), None


_TMP_RE = re.compile(r"\.tmp-(\d+)(?:-[0-9a-f]+)?$")


def _tmp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def temporaries(folder: Path) -> list[tuple[Path, bool]]:
    """Temporary files of interrupted saves in ``folder``: ``(path, owner process still alive)``."""
    out = []
    for p in sorted(folder.glob("*.tmp-*")):
        m = _TMP_RE.search(p.name)
        if m:
            out.append((p, _alive(int(m.group(1)))))
    return out


def sweep_temporaries(folder: Path) -> int:
    """Remove temporary files left by saves whose process has died; returns how many."""
    n = 0
    for p, alive in temporaries(folder):
        if not alive:
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
    return n


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
