"""The database directory: SQLite catalog + feature store + FAISS indexes.

Layout of a database directory::

    DB/
      ibin-db.json          format marker (written once, at creation)
      catalog.sqlite        exhibits, metadata, descriptors, settings (WAL mode)
      store/seg-*.ibf       prepared arrays, append-only (see _store)
      index/<space>.faiss   FAISS index per descriptor space, a cache of the catalog

An exhibit is on file when its catalog row is committed. Its feature record
is appended and synced *before* that commit, and its index entry is derived
from the catalog, so a crash at any point leaves either the whole exhibit
or none of it visible. Writers serialise on SQLite's write lock; readers
see the last committed state (WAL snapshots).

This module knows nothing about cartridge cases or bullets: it stores named
arrays, JSON attributes and descriptor vectors for the engine.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from ..errors import DatabaseError, DuplicateExhibitError, ExhibitNotFoundError
from ._reviews import Reviews
from ._store import FeatureStore, RecordRef, encode_record
from ._vectors import VectorIndex

__all__ = ["Database", "ExhibitRecord", "NewExhibit", "FORMAT_VERSION"]

log = logging.getLogger(__name__)

FORMAT = "ibin-database"
FORMAT_VERSION = 1
_MARKER = "ibin-db.json"
_CATALOG = "catalog.sqlite"
_VECTOR_PART_BITS = 8  # vector id = exhibit rowid << 8 | part (up to 256 vectors per exhibit)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS exhibits (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    modality TEXT NOT NULL,
    source_name TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    ingested_by TEXT,
    seg INTEGER NOT NULL,
    off INTEGER NOT NULL,
    len INTEGER NOT NULL,
    record_sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS exhibits_sha ON exhibits(source_sha256, kind);
CREATE TABLE IF NOT EXISTS metadata (
    exhibit INTEGER NOT NULL REFERENCES exhibits(rowid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (exhibit, key)
);
CREATE INDEX IF NOT EXISTS metadata_kv ON metadata(key, value);
CREATE TABLE IF NOT EXISTS vectors (
    id INTEGER PRIMARY KEY,
    exhibit INTEGER NOT NULL REFERENCES exhibits(rowid) ON DELETE CASCADE,
    space TEXT NOT NULL,
    part INTEGER NOT NULL,
    vec BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS vectors_space ON vectors(space, id);
"""


@dataclass(frozen=True)
class NewExhibit:
    """Everything the database stores for one exhibit."""

    id: str
    kind: str
    modality: str
    source_name: str
    source_sha256: str
    arrays: Mapping[str, np.ndarray]
    attrs: Mapping
    vectors: Mapping[str, np.ndarray]  # space -> (n_parts, dim) float32
    metadata: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None


@dataclass(frozen=True)
class ExhibitRecord:
    """An exhibit on file (catalog row)."""

    rowid: int
    id: str
    kind: str
    modality: str
    source_name: str
    source_sha256: str
    ingested_at: str
    ref: RecordRef
    metadata: dict[str, str]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Database:
    """An ibin database directory.

    Use :meth:`open` (or :meth:`create`); close with :meth:`close` or a
    ``with`` block. A :class:`Database` object may be used from one thread
    at a time.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, *, readonly: bool):
        self.path = path
        self._conn = conn
        self.readonly = readonly
        self.store = FeatureStore(path / "store")
        self._indexes: dict[str, VectorIndex] = {}
        self._lock = threading.Lock()
        self.on_wait: Callable[[float], None] | None = None
        self.reviews = Reviews(self)  # examiners' dispositions of leads (see _reviews)

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | os.PathLike, *, exist_ok: bool = False) -> "Database":
        """Create a new, empty database directory (its parent must exist)."""
        p = Path(path)
        if (p / _MARKER).exists():
            if not exist_ok:
                raise DatabaseError(f"{p}: a database already exists here")
            return cls.open(p)
        if p.exists() and not p.is_dir():
            raise DatabaseError(f"{p}: exists and is not a directory")
        if p.exists() and any(p.iterdir()):
            raise DatabaseError(f"{p}: directory is not empty and is not an ibin database")
        if not p.parent.exists():
            raise DatabaseError(f"{p}: parent directory {p.parent} does not exist")
        p.mkdir(exist_ok=True)
        (p / "store").mkdir(exist_ok=True)
        (p / "index").mkdir(exist_ok=True)
        conn = cls._connect(p, readonly=False)
        with conn:
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR REPLACE INTO settings VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
            conn.execute("INSERT OR REPLACE INTO settings VALUES ('created', ?)", (_now(),))
        conn.close()
        marker = {"format": FORMAT, "version": FORMAT_VERSION, "created": _now()}
        tmp = p / (_MARKER + ".tmp")
        tmp.write_text(json.dumps(marker, indent=1) + "\n")
        os.replace(tmp, p / _MARKER)
        return cls.open(p)

    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = False, readonly: bool = False) -> "Database":
        """Open a database directory, creating it when ``create`` is true and it does not exist."""
        p = Path(path)
        if not (p / _MARKER).exists():
            if create:
                return cls.create(p)
            if p.exists():
                raise DatabaseError(f"{p}: not an ibin database (no {_MARKER})")
            raise DatabaseError(f"{p}: no such database")
        try:
            marker = json.loads((p / _MARKER).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DatabaseError(f"{p}: unreadable {_MARKER} ({e})") from None
        if marker.get("format") != FORMAT:
            raise DatabaseError(f"{p}: not an ibin database ({_MARKER} says {marker.get('format')!r})")
        if int(marker.get("version", 0)) > FORMAT_VERSION:
            raise DatabaseError(
                f"{p}: database format {marker.get('version')} is newer than this ibin understands ({FORMAT_VERSION})"
            )
        if not (p / _CATALOG).exists():
            raise DatabaseError(f"{p}: the catalog ({_CATALOG}) is missing")
        conn = cls._connect(p, readonly=readonly)
        return cls(p, conn, readonly=readonly)

    @staticmethod
    def _connect(p: Path, *, readonly: bool) -> sqlite3.Connection:
        try:
            if readonly:
                conn = sqlite3.connect(f"file:{p / _CATALOG}?mode=ro", uri=True, isolation_level=None,
                                       check_same_thread=False, timeout=30.0)
            else:
                conn = sqlite3.connect(p / _CATALOG, isolation_level=None, check_same_thread=False, timeout=30.0)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.DatabaseError as e:
            raise DatabaseError(f"{p / _CATALOG}: cannot open the catalog ({e})") from None
        return conn

    def close(self) -> None:
        self.store.close()
        self._indexes.clear()
        try:
            self._conn.close()
        except sqlite3.Error:
            pass

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ settings
    def get_setting(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_setting(self, key: str, value: str) -> None:
        with self.write() as cur:
            cur.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, value))

    def ensure_setting(self, key: str, value: str) -> None:
        """Record ``value`` under ``key`` if unset; raise if a different value is on file."""
        cur = self.get_setting(key)
        if cur is None:
            with self.write() as c:
                row = c.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
                if row is None:
                    c.execute("INSERT INTO settings VALUES (?, ?)", (key, value))
                    return
                cur = row[0]
        if cur != value:
            raise DatabaseError(
                f"{self.path}: this database was built with different settings for {key!r}; "
                "exhibits prepared differently cannot be compared (use a new database)"
            )

    # ------------------------------------------------------------------ writing
    @contextmanager
    def write(self) -> Iterator[sqlite3.Cursor]:
        """A write transaction (``BEGIN IMMEDIATE``), waiting for other writers."""
        if self.readonly:
            raise DatabaseError(f"{self.path}: opened read-only")
        cur = self._conn.cursor()
        start = time.monotonic()
        warned = False
        while True:
            try:
                self._conn.execute("PRAGMA busy_timeout=2000")
                cur.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise DatabaseError(f"{self.path}: catalog error ({e})") from None
                waited = time.monotonic() - start
                if not warned and self.on_wait is not None:
                    self.on_wait(waited)
                    warned = True
                if waited > 600:
                    raise DatabaseError(f"{self.path}: another process has held the database for over 10 minutes") from None
        self._conn.execute("PRAGMA busy_timeout=30000")
        try:
            yield cur
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    def find_source(self, sha256: str, kind: str) -> str | None:
        """Id of the exhibit already made from a source file with this SHA-256, if any."""
        row = self._conn.execute(
            "SELECT id FROM exhibits WHERE source_sha256 = ? AND kind = ?", (sha256, kind)
        ).fetchone()
        return None if row is None else row[0]

    def add(self, ex: NewExhibit) -> tuple[str, bool]:
        """Put an exhibit on file.

        Returns ``(id, added)``: ``added`` is False when the same source file
        (same SHA-256, same kind) is already on file, whose id is returned.

        Raises
        ------
        DuplicateExhibitError
            If the id is taken by an exhibit from a different source.
        """
        _check_text("exhibit id", ex.id)
        for k, v in ex.metadata.items():
            _check_text("metadata key", k)
            _check_text(f"metadata value of {k!r}", v, allow_empty=True)
        record = encode_record(dict(ex.arrays), dict(ex.attrs))
        with self.write() as cur:
            row = cur.execute(
                "SELECT id FROM exhibits WHERE source_sha256 = ? AND kind = ?", (ex.source_sha256, ex.kind)
            ).fetchone()
            if row is not None:
                return row[0], False
            if cur.execute("SELECT 1 FROM exhibits WHERE id = ?", (ex.id,)).fetchone():
                raise DuplicateExhibitError(
                    f"exhibit id {ex.id!r} is already on file for a different source file; choose another --id"
                )
            ref = self.store.append(record)
            cur.execute(
                "INSERT INTO exhibits (id, kind, modality, source_name, source_sha256, ingested_at, ingested_by,"
                " seg, off, len, record_sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (ex.id, ex.kind, ex.modality, ex.source_name, ex.source_sha256, _now(), ex.user,
                 ref.segment, ref.offset, ref.length, ref.sha256),
            )
            rowid = cur.lastrowid
            cur.executemany(
                "INSERT INTO metadata (exhibit, key, value) VALUES (?,?,?)",
                [(rowid, k, str(v)) for k, v in ex.metadata.items()],
            )
            for space, vecs in ex.vectors.items():
                v = np.ascontiguousarray(np.atleast_2d(vecs), dtype=np.float32)
                if len(v) > (1 << _VECTOR_PART_BITS):
                    raise ValueError("too many vectors for one exhibit")
                cur.executemany(
                    "INSERT INTO vectors (id, exhibit, space, part, vec) VALUES (?,?,?,?,?)",
                    [((rowid << _VECTOR_PART_BITS) | i, rowid, space, i, v[i].tobytes()) for i in range(len(v))],
                )
        return ex.id, True

    def delete(self, exhibit_id: str) -> None:
        """Remove an exhibit from the catalog (its feature record stays, unreferenced)."""
        with self.write() as cur:
            row = cur.execute("SELECT rowid FROM exhibits WHERE id = ?", (exhibit_id,)).fetchone()
            if row is None:
                raise ExhibitNotFoundError(f"no exhibit {exhibit_id!r} in {self.path}")
            cur.execute("DELETE FROM exhibits WHERE rowid = ?", (row[0],))
        for idx in self._indexes.values():
            idx.remove(np.arange(row[0] << _VECTOR_PART_BITS, (row[0] + 1) << _VECTOR_PART_BITS, dtype=np.int64))

    # ------------------------------------------------------------------ reading
    def _record(self, row, metadata: dict[str, str]) -> ExhibitRecord:
        rowid, id_, kind, modality, src, sha, at, seg, off, ln, rsha = row
        return ExhibitRecord(rowid, id_, kind, modality, src, sha, at, RecordRef(seg, off, ln, rsha), metadata)

    _COLS = "rowid, id, kind, modality, source_name, source_sha256, ingested_at, seg, off, len, record_sha256"

    def get(self, exhibit_id: str) -> ExhibitRecord:
        row = self._conn.execute(f"SELECT {self._COLS} FROM exhibits WHERE id = ?", (exhibit_id,)).fetchone()
        if row is None:
            raise ExhibitNotFoundError(f"no exhibit {exhibit_id!r} in {self.path}")
        return self._record(row, self._metadata([row[0]]).get(row[0], {}))

    def get_rowids(self, rowids: Iterable[int]) -> dict[int, ExhibitRecord]:
        ids = [int(r) for r in rowids]
        out: dict[int, ExhibitRecord] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = ",".join("?" * len(chunk))
            rows = self._conn.execute(f"SELECT {self._COLS} FROM exhibits WHERE rowid IN ({q})", chunk).fetchall()
            md = self._metadata([r[0] for r in rows])
            for r in rows:
                out[r[0]] = self._record(r, md.get(r[0], {}))
        return out

    def _metadata(self, rowids: list[int]) -> dict[int, dict[str, str]]:
        out: dict[int, dict[str, str]] = {}
        for i in range(0, len(rowids), 500):
            chunk = rowids[i : i + 500]
            q = ",".join("?" * len(chunk))
            for ex, k, v in self._conn.execute(
                f"SELECT exhibit, key, value FROM metadata WHERE exhibit IN ({q}) ORDER BY key", chunk
            ):
                out.setdefault(ex, {})[k] = v
        return out

    def list(self, *, kind: str | None = None, modality: str | None = None,
             filters: Mapping[str, str] | None = None) -> list[ExhibitRecord]:
        """Exhibits on file, in ingest order, optionally filtered (metadata values match exactly)."""
        sql, args = self._filter_sql(kind, modality, filters)
        rows = self._conn.execute(f"SELECT {self._COLS} FROM exhibits WHERE {sql} ORDER BY rowid", args).fetchall()
        md = self._metadata([r[0] for r in rows])
        return [self._record(r, md.get(r[0], {})) for r in rows]

    def rowids(self, *, kind: str | None = None, modality: str | None = None,
               filters: Mapping[str, str] | None = None) -> np.ndarray:
        sql, args = self._filter_sql(kind, modality, filters)
        rows = self._conn.execute(f"SELECT rowid FROM exhibits WHERE {sql}", args).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    @staticmethod
    def _filter_sql(kind, modality, filters):
        parts, args = ["1"], []
        if kind is not None:
            parts.append("kind = ?")
            args.append(kind)
        if modality is not None:
            parts.append("modality = ?")
            args.append(modality)
        for k, v in (filters or {}).items():
            parts.append("rowid IN (SELECT exhibit FROM metadata WHERE key = ? AND value = ?)")
            args += [k, str(v)]
        return " AND ".join(parts), args

    def count(self, *, kind: str | None = None) -> int:
        sql, args = self._filter_sql(kind, None, None)
        return int(self._conn.execute(f"SELECT COUNT(*) FROM exhibits WHERE {sql}", args).fetchone()[0])

    def load(self, rec: ExhibitRecord, *, verify: bool = False) -> tuple[dict[str, np.ndarray], dict]:
        """The exhibit's stored arrays (read-only views) and attributes."""
        return self.store.read(rec.ref, verify=verify)

    # ------------------------------------------------------------------ vectors
    def _space_dim(self, space: str) -> int | None:
        row = self._conn.execute("SELECT vec FROM vectors WHERE space = ? LIMIT 1", (space,)).fetchone()
        return None if row is None else len(row[0]) // 4

    def index(self, space: str, *, factory: str = "Flat") -> VectorIndex | None:
        """The FAISS index of a descriptor space, caught up with the catalog (None when the space is empty)."""
        dim = self._space_dim(space)
        if dim is None:
            return None
        idx = self._indexes.get(space)
        path = self.path / "index" / f"{space.replace('/', '-')}.faiss"
        if idx is None or idx.dim != dim:
            idx = VectorIndex.load(path, dim, factory) or VectorIndex(dim, factory)
        n_before = idx.ntotal
        rows = self._conn.execute(
            "SELECT id, vec FROM vectors WHERE space = ? AND id > ? ORDER BY id", (space, idx.watermark)
        ).fetchall()
        if rows:
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            idx.add(ids, vecs)
        self._indexes[space] = idx
        if idx.ntotal != n_before and not self.readonly:
            try:
                idx.save(path)
            except OSError as e:  # the cache is optional; the catalog is the truth
                log.warning("%s: could not save the index cache (%s)", path, e)
        return idx

    def search_vectors(self, space: str, queries: np.ndarray, k: int, *,
                       allowed_rowids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest stored vectors: ``(scores (n, k), exhibit rowids (n, k), parts (n, k))``; -1 = empty."""
        idx = self.index(space)
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if idx is None:
            empty = np.full((len(q), k), -1, np.int64)
            return np.full((len(q), k), -np.inf, np.float32), empty, empty.copy()
        allowed = None
        if allowed_rowids is not None:
            r = np.asarray(allowed_rowids, dtype=np.int64)
            allowed = ((r[:, None] << _VECTOR_PART_BITS) + np.arange(1 << _VECTOR_PART_BITS)[None]).ravel()
            live = self._live_vector_ids(space, allowed)
            allowed = live
        else:
            # deleted exhibits may linger in an old index file until it is rewritten
            allowed = None if idx.ntotal == self._count_vectors(space) else self._all_vector_ids(space)
        D, I = idx.search(q, k, allowed=allowed)
        rowids = np.where(I >= 0, I >> _VECTOR_PART_BITS, -1)
        parts = np.where(I >= 0, I & ((1 << _VECTOR_PART_BITS) - 1), -1)
        return D, rowids, parts

    def _count_vectors(self, space: str) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM vectors WHERE space = ?", (space,)).fetchone()[0])

    def _all_vector_ids(self, space: str) -> np.ndarray:
        rows = self._conn.execute("SELECT id FROM vectors WHERE space = ?", (space,)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def _live_vector_ids(self, space: str, candidates: np.ndarray) -> np.ndarray:
        live = self._all_vector_ids(space)
        return live[np.isin(live, candidates)]

    def vectors_of(self, rowid: int, space: str) -> np.ndarray:
        rows = self._conn.execute(
            "SELECT vec FROM vectors WHERE exhibit = ? AND space = ? ORDER BY part", (rowid, space)
        ).fetchall()
        return np.stack([np.frombuffer(r[0], dtype=np.float32) for r in rows]) if rows else np.empty((0, 0), np.float32)

    def spaces(self) -> dict[str, int]:
        return {s: int(n) for s, n in self._conn.execute("SELECT space, COUNT(*) FROM vectors GROUP BY space")}

    # ------------------------------------------------------------------ info
    def info(self) -> dict:
        kinds = {k: int(n) for k, n in self._conn.execute("SELECT kind, COUNT(*) FROM exhibits GROUP BY kind")}
        store_bytes = sum(self.store.segment_path(s).stat().st_size for s in self.store.segments())
        index_bytes = sum(p.stat().st_size for p in (self.path / "index").glob("*.faiss"))
        cat = self.path / _CATALOG
        cat_bytes = sum(p.stat().st_size for p in self.path.glob(_CATALOG + "*"))
        spaces = {}
        for space, n in self.spaces().items():
            idx = self._indexes.get(space)
            spaces[space] = {"vectors": n, "index": "IDMap2," + (idx.factory if idx else "Flat"),
                             "dim": self._space_dim(space)}
        total = self.count()
        return {
            "path": str(self.path),
            "format_version": FORMAT_VERSION,
            "exhibits": total,
            "by_kind": kinds,
            "spaces": spaces,
            "bytes": {"catalog": cat_bytes, "store": store_bytes, "index": index_bytes,
                      "per_exhibit": (cat_bytes + store_bytes + index_bytes) / total if total else 0},
            "settings": {k: v for k, v in self._conn.execute("SELECT key, value FROM settings ORDER BY key")},
            "catalog_file": str(cat),
        }


def _check_text(what: str, value, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise DatabaseError(f"{what} must be text, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DatabaseError(f"{what} must not be empty")
    if any(ord(c) < 32 and c not in "\t" for c in value) or "\x7f" in value:
        raise DatabaseError(f"{what} {value!r} contains control characters")
    if len(value) > 4096:
        raise DatabaseError(f"{what} is longer than 4096 characters")
