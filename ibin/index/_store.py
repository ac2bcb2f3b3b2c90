"""Feature store: append-only segment files of self-describing array records.

Each exhibit's prepared arrays are written once, as one record appended to
the current segment file ``store/seg-NNNNNN.ibf``; the catalog keeps the
record's segment, offset, length and SHA-256. Records are never rewritten,
so a crash during an append can only leave unreferenced bytes at the end of
a segment, which readers never see (``ibin check`` reports them).

Record layout (all integers little-endian)::

    b"IBF1"                      4 bytes  magic
    header length  H             4 bytes  uint32
    header                       H bytes  UTF-8 JSON:
        {"arrays": [{"name", "dtype", "shape", "offset", "nbytes"}, ...],
         "attrs": {...}}
    zero padding to a multiple of 64
    array data, each array starting at a multiple of 64 from the record start

Arrays are read as zero-copy views of a memory map, so a search touches only
the records it needs.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatabaseError
from ._faults import point
from .._fs import fsync_dir, write_all

__all__ = ["FeatureStore", "RecordRef", "encode_record", "decode_record", "page_ranges"]

MAGIC = b"IBF1"
ALIGN = 64
SEGMENT_LIMIT = 1 << 30  # start a new segment after 1 GiB
_CHUNK = 1 << 16  # records are written in 64 KiB pieces (a crash can tear a record between them)
_DTYPES = {"int8", "uint8", "int16", "uint16", "int32", "int64", "float16", "float32", "float64", "bool"}


@dataclass(frozen=True)
class RecordRef:
    """Where a record lives: segment number, byte offset, length, SHA-256 (hex)."""

    segment: int
    offset: int
    length: int
    sha256: str


def _pad(n: int) -> int:
    return (-n) % ALIGN


def encode_record(arrays: dict[str, np.ndarray], attrs: dict) -> bytes:
    """Serialise named arrays and JSON attributes into one record."""
    specs = []
    blobs = []
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        if a.dtype.name not in _DTYPES:
            raise TypeError(f"array {name!r} has unsupported dtype {a.dtype}")
        specs.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape), "nbytes": int(a.nbytes)})
        blobs.append(a.tobytes())
    # offsets depend on the header size, which depends on the offsets: iterate
    offsets = [0] * len(specs)
    for _ in range(4):
        for s, off in zip(specs, offsets):
            s["offset"] = off
        header = json.dumps({"arrays": specs, "attrs": attrs}, separators=(",", ":"), sort_keys=True).encode()
        pos = 8 + len(header)
        pos += _pad(pos)
        new = []
        for b in blobs:
            new.append(pos)
            pos += len(b) + _pad(len(b))
        if new == offsets:
            break
        offsets = new
    out = bytearray(MAGIC + struct.pack("<I", len(header)) + header)
    out += b"\0" * _pad(len(out))
    for b, off in zip(blobs, offsets):
        assert len(out) == off
        out += b
        out += b"\0" * _pad(len(b))
    return bytes(out)


def _header(mv: memoryview, where: str) -> tuple[dict, int]:
    """A record's parsed JSON header and its length in bytes, checked for the magic and for truncation."""
    if len(mv) < 8 or bytes(mv[:4]) != MAGIC:
        raise DatabaseError(f"{where}: not a feature record (bad magic)")
    (hlen,) = struct.unpack("<I", mv[4:8])
    if 8 + hlen > len(mv):
        raise DatabaseError(f"{where}: truncated feature record header")
    try:
        return json.loads(bytes(mv[8 : 8 + hlen]).decode()), hlen
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatabaseError(f"{where}: damaged feature record header ({e})") from None


def decode_record(buf, *, where: str = "record") -> tuple[dict[str, np.ndarray], dict]:
    """Parse a record (bytes or memoryview) into arrays (views) and attributes."""
    mv = memoryview(buf)
    header, hlen = _header(mv, where)
    arrays = {}
    try:
        specs = header["arrays"]
        for s in specs:
            name, off, nb = str(s["name"]), int(s["offset"]), int(s["nbytes"])
            if s["dtype"] not in _DTYPES:
                raise ValueError(f"array {name!r} has unknown dtype {s['dtype']!r}")
            dt = np.dtype(s["dtype"])
            shape = tuple(int(n) for n in s["shape"])
            if any(n < 0 for n in shape) or math.prod(shape) * dt.itemsize != nb:
                raise ValueError(f"array {name!r}: shape {list(shape)} does not fit {nb} bytes")
            if off < 8 + hlen or off + nb > len(mv):
                raise DatabaseError(f"{where}: truncated feature record (array {name!r})")
            arrays[name] = np.frombuffer(mv[off : off + nb], dtype=dt).reshape(shape)
        attrs = header.get("attrs", {})
    except DatabaseError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DatabaseError(f"{where}: damaged feature record header ({type(e).__name__}: {e})") from None
    return arrays, attrs


def decode_shapes(buf, *, where: str = "record") -> dict[str, tuple[int, ...]]:
    """The shapes of a record's arrays, from its header alone (the arrays are neither checked nor read)."""
    header, _ = _header(memoryview(buf), where)
    try:
        return {str(s["name"]): tuple(int(n) for n in s["shape"]) for s in header["arrays"]}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DatabaseError(f"{where}: damaged feature record header ({type(e).__name__}: {e})") from None


#: Whether :meth:`FeatureStore.prefetch` advises the kernel (switched off only
#: to measure what it saves: ``benchmarks/cold.py``).
PREFETCH = True


def page_ranges(refs, page: int) -> dict[int, list[tuple[int, int]]]:
    """Page-aligned ``(start, length)`` byte ranges covering the records, per segment, sorted, overlaps and neighbours merged."""
    by_seg: dict[int, list[tuple[int, int]]] = {}
    for r in refs:
        start = r.offset - r.offset % page
        by_seg.setdefault(r.segment, []).append((start, r.offset + r.length))
    out: dict[int, list[tuple[int, int]]] = {}
    for seg, spans in by_seg.items():
        merged: list[list[int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        out[seg] = [(a, b - a) for a, b in merged]
    return out


class FeatureStore:
    """Append-only segment files under ``root`` (the database's ``store/``).

    Appending is not locked here: the database calls :meth:`append` only
    while it holds the catalog's write transaction, which serialises
    writers across processes.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._maps: dict[int, tuple[mmap.mmap, int]] = {}
        self._names: dict[int, str] = {}
        self._lock = threading.Lock()

    def segment_path(self, seg: int) -> Path:
        return self.root / f"seg-{seg:06d}.ibf"

    def segments(self) -> list[int]:
        out = []
        for p in self.root.glob("seg-*.ibf"):
            try:
                out.append(int(p.stem[4:]))
            except ValueError:
                continue
        return sorted(out)

    def append(self, record: bytes, *, fsync: bool = True) -> RecordRef:
        """Append one record durably and return its reference."""
        self.root.mkdir(parents=True, exist_ok=True)
        segs = self.segments()
        seg = segs[-1] if segs else 1
        path = self.segment_path(seg)
        if path.exists() and path.stat().st_size + len(record) > SEGMENT_LIMIT and path.stat().st_size > 0:
            seg += 1
            path = self.segment_path(seg)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                point("store.open")
                offset = os.lseek(fd, 0, os.SEEK_END)
                pad = _pad(offset)
                if pad:  # keep every record 64-byte aligned in the file
                    write_all(fd, b"\0" * pad)
                    offset += pad
                point("store.padded")
                view = memoryview(record)
                for start in range(0, len(view), _CHUNK):
                    write_all(fd, view[start : start + _CHUNK])
                    point("store.chunk")
                point("store.written")
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if fsync:
                fsync_dir(self.root)
        except OSError as e:
            # whatever reached the file is an unreferenced tail: readers never see it
            raise DatabaseError(f"{path}: cannot append a feature record ({e.strerror or e})") from None
        point("store.synced")
        return RecordRef(seg, offset, len(record), hashlib.sha256(record).hexdigest())

    def _map(self, seg: int, need: int) -> mmap.mmap:
        with self._lock:
            cur = self._maps.get(seg)
            if cur is not None and cur[1] >= need:
                return cur[0]
            path = self.segment_path(seg)
            try:
                with open(path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size < need:
                        raise DatabaseError(f"{path}: segment is shorter than the catalog says ({size} < {need} bytes)")
                    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except FileNotFoundError:
                raise DatabaseError(f"{path}: feature segment is missing") from None
            self._maps[seg] = (m, size)
            return m

    def _where(self, ref: RecordRef) -> str:
        """``segment path@offset``, for messages (the paths' text kept: a search reads hundreds of records)."""
        name = self._names.get(ref.segment)
        if name is None:
            name = self._names[ref.segment] = str(self.segment_path(ref.segment))
        return f"{name}@{ref.offset}"

    def _buffer(self, ref: RecordRef) -> memoryview:
        m = self._map(ref.segment, ref.offset + ref.length)
        return memoryview(m)[ref.offset : ref.offset + ref.length]

    def read(self, ref: RecordRef, *, verify: bool = False) -> tuple[dict[str, np.ndarray], dict]:
        """Arrays (read-only views of the memory map) and attributes of a record."""
        buf = self._buffer(ref)
        where = self._where(ref)
        if verify and hashlib.sha256(buf).hexdigest() != ref.sha256:
            raise DatabaseError(f"{where}: feature record damaged (SHA-256 mismatch)")
        return decode_record(buf, where=where)

    def shapes(self, ref: RecordRef) -> dict[str, tuple[int, ...]]:
        """The shapes of a record's arrays, from its header only (:func:`decode_shapes`)."""
        return decode_shapes(self._buffer(ref), where=self._where(ref))

    def prefetch(self, refs) -> int:
        """Ask the operating system to read these records in now, all at once; returns the bytes asked for.

        Advisory (``madvise(MADV_WILLNEED)`` on the records' pages, adjacent
        ranges merged): the kernel queues every read together instead of the
        one-at-a-time page faults of reading the records in turn, which on a
        store larger than the page cache cost a disk round trip each. Does
        nothing where the platform has no ``madvise``; a segment that cannot
        be mapped is reported as :meth:`read` would report it.
        """
        if not PREFETCH or not hasattr(mmap, "MADV_WILLNEED"):
            return 0
        asked = 0
        for seg, ranges in page_ranges(refs, mmap.PAGESIZE).items():
            m = self._map(seg, max(start + length for start, length in ranges))
            for start, length in ranges:
                try:
                    m.madvise(mmap.MADV_WILLNEED, start, length)
                except (OSError, ValueError):  # advice refused: the reads will fault the pages in as before
                    return asked
                asked += length
        return asked

    def read_bytes(self, ref: RecordRef) -> bytes:
        m = self._map(ref.segment, ref.offset + ref.length)
        return bytes(m[ref.offset : ref.offset + ref.length])

    def close(self) -> None:
        with self._lock:
            for m, _ in self._maps.values():
                try:
                    m.close()
                except BufferError:  # views still alive; the map closes when they go
                    pass
            self._maps.clear()
