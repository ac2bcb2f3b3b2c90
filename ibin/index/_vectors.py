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


def growth_room(n: int) -> int:
    """Rows of room kept past ``n`` in a buffer that grows at its end: an eighth (at least 1,024), so growth copies rarely.

    For a mapped index copied to grow (:meth:`VectorIndex._own`) and the
    candidate stage's per-anchor arrays (:mod:`ibin._polar_rows`).
    """
    return max(n // 8, 1024)


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
        #: The index file's pages a loaded exact index reads its vectors from (None: its own memory).
        self._mapping = None
        #: Format version of the file the index was read from (None: made in memory).
        self.file_version: int | None = None
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

    @property
    def mapped(self) -> bool:
        """Whether the vectors are read in place from the index file's pages (see :func:`_read`)."""
        return self._mapping is not None

    def _own(self, more: int = 0) -> None:
        """Copy a mapped index's vectors into memory it owns, with room for ``more`` and an eighth besides.

        FAISS cannot grow or shrink vectors it reads in place (it aborts the
        process), so :meth:`add` and :meth:`remove` call this first. One
        copy, into a buffer whose room the following adds fill without
        copying again (left to FAISS, the first add after loading a million
        signatures doubled a 2 GB buffer: 3.6 s). Arrays :meth:`matrix`
        handed out before keep the mapped index and its pages alive.
        """
        if not self.mapped:
            return
        faiss = _faiss()
        old = faiss.downcast_index(self.index.index)
        n, size = int(old.ntotal), int(old.code_size)
        base = faiss.IndexFlat(self.dim, old.metric_type)
        index = faiss.IndexIDMap2(base)  # wraps an empty index only
        base.codes.resize((n + more + growth_room(n + more)) * size)  # std::vector keeps this capacity ...
        base.codes.resize(n * size)  # ... when shrunk to the vectors held
        if n:
            faiss.rev_swig_ptr(base.codes.data(), n * size)[:] = faiss.rev_swig_ptr(old.codes.data(), n * size)
        base.ntotal = index.ntotal = n
        faiss.copy_array_to_vector(faiss.vector_to_array(self.index.id_map), index.id_map)
        index.construct_rev_map()
        self.index, self._mapping = index, None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        x = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        if len(ids) == 0:
            return
        self._own(len(ids))
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

    def search(self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None,
               allowed_groups: np.ndarray | None = None, group_bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner products; ``(scores float32 (n, k), ids int64 (n, k))``, -1 = empty slot.

        ``allowed`` restricts the search to these ids inside FAISS (an ID
        selector), so a filtered search still returns ``k`` results when
        ``k`` allowed vectors exist. ``allowed_groups`` restricts it to the
        ids whose ``id >> group_bits`` is one of these (an exhibit's vectors,
        with the database's ids): a bitmap of ``2**group_bits`` bits per
        group up to the largest, ``2**(group_bits - 3)`` bytes each (32 MB
        for a million exhibits), whose bytes are set for the groups given,
        so the selector costs what the groups do, not what every id of them
        would (with 55k exhibits allowed of 1M: 0.44 s per search as a list
        of the ids held, read from the catalog).
        """
        faiss = _faiss()
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, int(k))
        empty = np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if self.ntotal == 0:
            return empty
        sel = keep = None
        if allowed is not None:
            allowed = np.ascontiguousarray(np.unique(allowed), dtype=np.int64)
            if len(allowed) == 0:
                return empty
            sel = faiss.IDSelectorBatch(allowed)
        elif allowed_groups is not None:
            if group_bits < 3:
                raise ValueError("group_bits must be at least 3 (whole bytes of the bitmap)")
            groups = np.asarray(allowed_groups, dtype=np.int64)
            groups = groups[(groups >= 0) & (groups <= (self.watermark >> group_bits))]  # none held above
            if len(groups) == 0:
                return empty
            per = 1 << (group_bits - 3)
            keep = np.zeros((int(groups.max()) + 1, per), np.uint8)
            keep[groups] = 0xFF
            sel = faiss.IDSelectorBitmap(keep.size, faiss.swig_ptr(keep))  # ``keep`` outlives the search
        nprobe = self.nprobe
        if nprobe:
            params = faiss.SearchParametersIVF(nprobe=nprobe, sel=sel) if sel is not None else faiss.SearchParametersIVF(nprobe=nprobe)
        else:
            params = faiss.SearchParameters(sel=sel) if sel is not None else None
        D, I = self.index.search(q, k, params=params)
        del keep
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
            x = np.asarray(_Pinned(view, (self.index, self._mapping)))  # its base holds the FAISS index (and its pages)
            x.flags.writeable = False
        else:
            x = np.empty((0, d), np.float32)
        ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        return ids, x

    def remove(self, ids: np.ndarray) -> None:
        faiss = _faiss()
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids):
            self._own()
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
        memory first took 18 s for a million 512-dimensional vectors. An
        exact index starts where its vectors fall on a 64-byte boundary
        (``payload_at``), so a later load can read them in place, aligned
        (:func:`_read`); the checksum is taken per block of
        :data:`_BLOCK_BYTES`, so a load verifies the blocks in parallel.
        """
        faiss = _faiss()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_temporaries(path.parent)
        tmp = _tmp_name(path)
        at = _HEADER_BYTES + self._vectors_padding()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.lseek(fd, at, os.SEEK_SET)
                digest = _BlockDigest()

                def sink(chunk: bytes) -> int:
                    digest.update(chunk)
                    write_all(fd, chunk)
                    return len(chunk)

                faiss.write_index(self.index, faiss.PyCallbackIOWriter(sink))
                header = {"format": "ibin-index", "version": 2, "dim": self.dim, "factory": self.factory,
                          "watermark": self.watermark, "ntotal": self.ntotal, "faiss": faiss_version(),
                          "bytes": digest.size, "payload_at": at, "sha256_block_bytes": _BLOCK_BYTES,
                          "sha256": digest.hexdigest(), "catalog": catalog_id}
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

    def _vectors_padding(self) -> int:
        """Bytes to leave after the header so that an exact index's vectors start on a 64-byte boundary in its file.

        The vectors follow a fixed prefix in FAISS's serialisation (the
        ID map's and the flat index's headers and the vectors' count): the
        serialisation of an empty such index, less the 8 bytes of its empty
        id list. Other kinds of index are read into memory: no padding.
        """
        faiss = _faiss()
        base = faiss.downcast_index(self.index.index)
        if not isinstance(base, faiss.IndexFlat):
            return 0
        empty = faiss.IndexIDMap2(faiss.IndexFlat(self.dim, base.metric_type))
        prefix = len(faiss.serialize_index(empty)) - 8
        return (-(_HEADER_BYTES + prefix)) % 64

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int, factory: str | None, *, catalog_id: str | None = None,
             max_id: int | None = None) -> "VectorIndex | None":
        """Read an index file; None when it is missing, damaged, of another shape or another database.

        ``factory=None`` accepts the file's own kind of index.

        ``max_id`` is the largest vector id the catalog can have issued: an
        index holding a larger one was not made from this catalog.
        """
        got, problem = _read(path, in_place=True)
        if got is None:
            if problem is not None:
                log.warning("%s: %s; it will be rebuilt from the catalog", path, problem)
            return None
        index, meta, mapping = got
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
        self._mapping = mapping
        self.file_version = int(meta.get("version", 1))
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
#: Bytes of a saved index file's header: the magic, the header length and the
#: header JSON padded with spaces (a multiple of 64). The FAISS payload starts
#: there, or up to 63 bytes later (``payload_at``: an exact index's vectors aligned).
_HEADER_BYTES = 4096
#: The payload's SHA-256 is taken per block of this many bytes (the last one
#: shorter; an empty payload is one empty block) and the header keeps the
#: SHA-256 of the blocks' digests one after another: a load verifies the
#: blocks in parallel (the 2 GB of a million polar signatures took 1.3 s in
#: one thread). Files of version 1 keep the SHA-256 of the whole payload.
_BLOCK_BYTES = 1 << 26


class _BlockDigest:
    """SHA-256 of a stream per :data:`_BLOCK_BYTES` block, and of those digests (see :func:`_digest`)."""

    def __init__(self) -> None:
        self.size, self._done, self._sha, self._in = 0, [], hashlib.sha256(), 0

    def update(self, chunk) -> None:
        view = memoryview(chunk).cast("B")
        self.size += len(view)
        while len(view):
            take = min(len(view), _BLOCK_BYTES - self._in)
            self._sha.update(view[:take])
            self._in += take
            view = view[take:]
            if self._in == _BLOCK_BYTES:
                self._done.append(self._sha.digest())
                self._sha, self._in = hashlib.sha256(), 0

    def hexdigest(self) -> str:
        last = [self._sha.digest()] if self._in or not self._done else []
        return hashlib.sha256(b"".join(self._done + last)).hexdigest()


def _digest(payload, block_bytes: int | None) -> str:
    """The SHA-256 a header keeps for ``payload``: of the whole (``block_bytes`` None, version 1) or of its blocks' digests.

    The blocks are hashed in as many threads as this process may use
    (hashlib lets go of the interpreter while it hashes).
    """
    if block_bytes is None:
        return hashlib.sha256(payload).hexdigest()
    n = len(payload)
    starts = range(0, max(n, 1), block_bytes)
    workers = min(len(starts), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)

    def one(s: int) -> bytes:
        return hashlib.sha256(payload[s : s + block_bytes]).digest()

    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as ex:
            digests = list(ex.map(one, starts))
    else:
        digests = [one(s) for s in starts]
    return hashlib.sha256(b"".join(digests)).hexdigest()


def inspect(path: str | os.PathLike) -> tuple[tuple[object, dict] | None, str | None]:
    """Read an index file into memory of its own, verifying its header, size and SHA-256.

    As :func:`_read` with ``in_place`` False (what :func:`~ibin.index.check_database`
    and the benchmarks use).
    """
    got, problem = _read(path, in_place=False)
    return (None if got is None else got[:2]), problem


def _read(path: str | os.PathLike, *, in_place: bool) -> tuple[tuple[object, dict, object] | None, str | None]:
    """Read an index file, verifying its header, size and SHA-256.

    File layout: ``b"IBX1"``, header length (uint32 LE), header JSON
    (``version``, ``dim``, ``factory``, ``watermark``, ``ntotal``,
    ``catalog``, ``bytes`` of the payload, ``payload_at``, and ``sha256``
    with ``sha256_block_bytes``, see :data:`_BLOCK_BYTES`;
    :meth:`VectorIndex.save` pads it with spaces to :data:`_HEADER_BYTES`),
    zero padding to ``payload_at``, then the FAISS index as
    ``faiss.write_index`` writes it. Version 1 files (until 2026-12-04)
    have neither ``payload_at`` (the payload starts at the next multiple of
    64) nor ``sha256_block_bytes`` (the SHA-256 of the whole payload); they
    are read into memory, as before.

    The file is memory-mapped: the checksum is taken over the mapped pages
    and FAISS then reads the verified payload from them, so the file is not
    copied in memory on the way (reading through an in-memory copy took
    20 s for a million 512-dimensional vectors). An exact (``Flat``) index
    keeps its vectors in those pages (FAISS's zero-copy reader): loading a
    million polar signatures copies nothing (it copied 2 GB, ~1.5 s), the
    page cache holds them once for every process that searches, and the
    mapping lives as long as the index (:meth:`VectorIndex._own` copies
    them before the index changes), when ``in_place`` (:meth:`VectorIndex.load`).
    As with the feature store's segments, a file is only ever replaced by a
    rename, never rewritten in place, so the pages mapped stay the ones
    verified. Other indexes are read in blocks into memory of their own.

    Returns
    -------
    ((index, header, mapping) or None, problem or None)
        ``mapping`` is the array of the file's pages the index reads its
        vectors from, to be kept as long as the index, or None.
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
            mm = _map_whole(f.fileno()) if size else None
        except (OSError, ValueError) as e:
            return None, f"index file unreadable ({e})"
        if mm is None:
            return _inspect_mapped(path, b"", False)
        try:
            got, problem = _inspect_mapped(path, mm, in_place)
        except BaseException:
            _close(mm)
            raise
        if got is None or got[2] is None:
            _close(mm)  # otherwise the index reads its vectors from it
        return got, problem


def _map_whole(fd: int) -> mmap.mmap:
    """A read-only map of a whole file, its pages mapped at once where the system can (Linux: ``MAP_POPULATE``).

    The checksum then reads every page anyway: one call that maps them
    all, instead of a page fault per few pages, made the checksum of the
    2 GB of a million polar signatures 0.88 -> 0.71 s (two threads).
    """
    if hasattr(mmap, "MAP_POPULATE"):
        return mmap.mmap(fd, 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
    return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)


def _close(mm: mmap.mmap) -> None:
    try:
        mm.close()
    except BufferError:  # a view of it is still alive: unmapped once that goes
        pass


def _inspect_mapped(path: Path, raw, in_place: bool) -> tuple[tuple[object, dict, object] | None, str | None]:
    """:func:`_read` of a file's bytes (a memory map); keeps a view of them only for a Flat index read ``in_place``."""
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
        start = int(meta.get("payload_at", 8 + hlen + (-(8 + hlen)) % 64))
        nbytes, sha = int(meta["bytes"]), str(meta["sha256"])
        block = meta.get("sha256_block_bytes")
        block = None if block is None else int(block)
        if start < 8 + hlen or (block is not None and block <= 0):
            raise ValueError("payload_at or sha256_block_bytes out of range")
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        return None, f"index file header damaged ({e})"
    held = len(raw) - start
    if held != nbytes:
        return None, f"index file holds {max(held, 0)} bytes of index, its header says {nbytes}: damaged"
    with memoryview(raw) as view, view[start:] as payload:
        digest = _digest(payload, block)
    if digest != sha:
        return None, "index file damaged: its content does not match the SHA-256 in its header"
    pos = start

    def source(n: int) -> bytes:
        nonlocal pos
        chunk = raw[pos : pos + n]
        pos += len(chunk)
        return chunk

    # in place: an exact index saved with its vectors aligned (version 2), by a FAISS that reads
    # in place (its zero-copy reader and vectors that may be views came with FAISS 1.10-1.11)
    mapped = (in_place and isinstance(raw, mmap.mmap) and meta.get("factory") == "Flat" and "payload_at" in meta
              and nbytes > 0 and hasattr(faiss, "ZeroCopyIOReader"))
    def read(reader):
        try:
            return faiss.read_index(reader), None
        except Exception as e:  # noqa: BLE001 - FAISS raises RuntimeError with its own text
            return None, f"index file unreadable by FAISS ({e})"

    payload = np.frombuffer(raw, np.uint8, count=nbytes, offset=start) if mapped else None
    index, problem = read(faiss.ZeroCopyIOReader(faiss.swig_ptr(payload), nbytes) if mapped
                          else faiss.PyCallbackIOReader(source))
    if index is None:
        return None, problem
    if not isinstance(index, faiss.IndexIDMap2):
        return None, "index file holds vectors without ids"
    if int(meta.get("ntotal", -1)) != index.ntotal:
        return None, "index file header and content disagree on the number of vectors"
    if mapped:
        base = faiss.downcast_index(index.index)
        if not isinstance(base, faiss.IndexFlat):
            return None, "index file of a Flat index holds another kind"
        if getattr(base.codes, "is_owned", True):  # copied after all (a FAISS without views)
            payload = None
        elif base.ntotal and faiss.rev_swig_ptr(base.get_xb(), 1).ctypes.data % 64:
            # not where save() put them (another FAISS's layout): read into memory, aligned
            del index, base
            payload = None
            pos = start
            index, problem = read(faiss.PyCallbackIOReader(source))
            if index is None:
                return None, problem
    return (index, meta, payload), None


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
