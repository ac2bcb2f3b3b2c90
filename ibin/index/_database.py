"""The database directory: SQLite catalog + feature store + FAISS indexes.

Layout of a database directory::

    DB/
      ibin-db.json          format marker (written once, at creation)
      catalog.sqlite        exhibits, metadata, descriptors, settings, audit log (WAL mode)
      store/seg-*.ibf       prepared arrays, append-only (see _store)
      index/<space>.faiss   FAISS index per descriptor space, a cache of the catalog
                            (ibin header: watermark, catalog id, SHA-256; then FAISS)

An exhibit is on file when its catalog row is committed. Its feature record
is appended and synced *before* that commit, its audit entry commits in the
same transaction, and its index entry is derived from the catalog, so a
crash at any point leaves either the whole exhibit or none of it visible.
Writers serialise on SQLite's write lock (``BEGIN IMMEDIATE``); readers see
the last committed state, and :meth:`Database.snapshot` holds one state for
a whole search. A new database is built in a temporary folder and renamed
into place, so it appears complete or not at all. See ``docs/DATABASE.md``.

This module knows nothing about cartridge cases or bullets: it stores named
arrays, JSON attributes and descriptor vectors for the engine.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import secrets
import shutil
import sqlite3
import threading
import time
import unicodedata
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from ..errors import DatabaseError, DuplicateExhibitError, ExhibitNotFoundError
from . import _audit
from ._audit import AuditEntry
from ._faults import point
from .._fs import fsync_dir, write_all
from ._reviews import Reviews
from ._store import FeatureStore, RecordRef, encode_record
from ._vectors import VectorIndex, sweep_temporaries

__all__ = ["Database", "ExhibitRecord", "NewExhibit", "FORMAT_VERSION", "validate_metadata", "check_text"]

log = logging.getLogger(__name__)

FORMAT = "ibin-database"
FORMAT_VERSION = 1
_MARKER = "ibin-db.json"
_CATALOG = "catalog.sqlite"
_VECTOR_PART_BITS = 8  # vector id = exhibit rowid << 8 | part (up to 256 vectors per exhibit)
#: An index file is rewritten once the vectors it lacks reach this share of the
#: index (or when there is none): each save rewrites the whole file, so its cost
#: per added vector stays bounded, and a process loading the file reads at most
#: this share of the vectors from the catalog.
UNSAVED_SHARE = 0.01

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
CREATE INDEX IF NOT EXISTS vectors_exhibit ON vectors(exhibit);
"""

#: Exhibits per kind (key ``exhibits/<kind>``) and vectors per descriptor space
#: (``vectors/<space>``), kept by triggers in the transaction that adds or
#: deletes the rows, so they are exact in any snapshot. A lead list asks for
#: both; counting the rows took ~65 and ~32 ms at 1M exhibits, each time
#: (since 2026-12-04; :meth:`Database._migrate` adds them to older catalogs,
#: :meth:`Database.reindex` counts again, ``ibin check`` compares).
_COUNTS_STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS counts (key TEXT PRIMARY KEY, n INTEGER NOT NULL)",
    """CREATE TRIGGER IF NOT EXISTS counts_exhibit_added AFTER INSERT ON exhibits
BEGIN INSERT INTO counts VALUES ('exhibits/' || NEW.kind, 1) ON CONFLICT(key) DO UPDATE SET n = n + 1; END""",
    """CREATE TRIGGER IF NOT EXISTS counts_exhibit_deleted AFTER DELETE ON exhibits
BEGIN UPDATE counts SET n = n - 1 WHERE key = 'exhibits/' || OLD.kind; END""",
    """CREATE TRIGGER IF NOT EXISTS counts_vector_added AFTER INSERT ON vectors
BEGIN INSERT INTO counts VALUES ('vectors/' || NEW.space, 1) ON CONFLICT(key) DO UPDATE SET n = n + 1; END""",
    """CREATE TRIGGER IF NOT EXISTS counts_vector_deleted AFTER DELETE ON vectors
BEGIN UPDATE counts SET n = n - 1 WHERE key = 'vectors/' || OLD.space; END""",
)
_COUNTS_NAMES = {"counts", "counts_exhibit_added", "counts_exhibit_deleted", "counts_vector_added",
                 "counts_vector_deleted"}
#: The counts as the rows give them (what the triggers keep).
_RECOUNT = ("SELECT 'exhibits/' || kind, COUNT(*) FROM exhibits GROUP BY kind "
            "UNION ALL SELECT 'vectors/' || space, COUNT(*) FROM vectors GROUP BY space")


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
    vector_parts: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # space -> part number of each row


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
    at a time; any number of processes may use one database at once.

    Attributes
    ----------
    on_wait : callable, optional
        Called once, as ``on_wait(seconds)``, when a write has waited about
        two seconds for another process's write to finish (the CLI prints a
        message). The write keeps waiting, up to ten minutes.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, *, readonly: bool):
        self.path = path
        self._conn = conn
        self.readonly = readonly
        self.store = FeatureStore(path / "store")
        self._indexes: dict[str, VectorIndex] = {}
        self._lock = threading.Lock()
        self._writing = False
        self._snapshot_depth = 0
        self.catalog_id: str | None = None
        self.on_wait: Callable[[float], None] | None = None
        #: arrays derived from the indexes by the engine, kept for this handle's lifetime
        self.derived: dict = {}
        self._space_matrices: dict = {}  # space -> (index, its version, space_matrix())
        self._has_counts = False  # the catalog keeps its counts (_COUNTS_STATEMENTS); set on opening
        self.reviews = Reviews(self)  # examiners' dispositions of leads (see _reviews)

    # ------------------------------------------------------------------ opening
    @classmethod
    def probe(cls, path: str | os.PathLike, *, create: bool = False) -> bool:
        """Check that ``path`` can be opened (or, with ``create``, created) without touching it.

        Returns True when a database exists there, False when ``create`` is
        true and one can be made there.

        Raises
        ------
        DatabaseError
            With the reason the path cannot be used.
        """
        p = Path(path)
        if (p / _MARKER).exists():
            _read_marker(p)
            if not (p / _CATALOG).exists():
                raise DatabaseError(f"{p}: the catalog ({_CATALOG}) is missing")
            return True
        if not create:
            if p.exists():
                raise DatabaseError(f"{p}: not an ibin database (no {_MARKER})")
            raise DatabaseError(f"{p}: no such database")
        if p.exists() and not p.is_dir():
            raise DatabaseError(f"{p}: exists and is not a directory")
        if p.exists() and any(p.iterdir()):
            raise DatabaseError(f"{p}: directory is not empty and is not an ibin database")
        if not p.parent.exists():
            raise DatabaseError(f"{p}: parent directory {p.parent} does not exist")
        return False

    @classmethod
    def create(cls, path: str | os.PathLike, *, exist_ok: bool = False, user: str | None = None) -> "Database":
        """Create a new, empty database directory (its parent must exist).

        The database is built in a temporary folder beside ``path`` and
        renamed into place, so a crash never leaves half a database, and two
        processes creating the same database at once end up sharing one.
        """
        p = Path(path)
        if cls.probe(p, create=True):
            if not exist_ok:
                raise DatabaseError(f"{p}: a database already exists here")
            return cls.open(p)
        _sweep_creations(p)
        tmp = p.parent / f".{p.name}.creating-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.mkdir(tmp)
        except OSError as e:
            raise DatabaseError(f"{p}: cannot create the database ({e.strerror or e})") from None
        try:
            cls._build(tmp, user)
            if p.is_dir():  # an empty folder made for the database: keep its permissions
                try:
                    os.chmod(tmp, p.stat().st_mode & 0o7777)
                except OSError:
                    pass
            point("create.built")
            try:
                os.rename(tmp, p)
            except OSError as e:
                if not (p / _MARKER).exists():
                    raise DatabaseError(f"{p}: cannot create the database ({e.strerror or e})") from None
                if not exist_ok:  # another process made it first
                    raise DatabaseError(f"{p}: a database already exists here") from None
            fsync_dir(p.parent)
        except sqlite3.Error as e:
            raise DatabaseError(f"{p}: cannot create the catalog ({e})") from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return cls.open(p)

    @classmethod
    def _build(cls, d: Path, user: str | None) -> None:
        (d / "store").mkdir()
        (d / "index").mkdir()
        catalog_id = uuid.uuid4().hex
        conn = cls._connect(d, readonly=False)
        try:
            conn.executescript(_SCHEMA + _audit.SCHEMA + ";\n".join(_COUNTS_STATEMENTS) + ";\n")
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.cursor()
            cur.executemany("INSERT OR REPLACE INTO settings VALUES (?, ?)", [
                ("format_version", str(FORMAT_VERSION)), ("created", _now()), ("catalog_id", catalog_id),
            ])
            _audit.append(cur, "create", user, {"format_version": FORMAT_VERSION, "catalog_id": catalog_id})
            conn.execute("COMMIT")
        finally:
            conn.close()
        marker = {"format": FORMAT, "version": FORMAT_VERSION, "created": _now()}
        _write_synced(d / _MARKER, (json.dumps(marker, indent=1) + "\n").encode())
        for sub in ("store", "index", "."):
            fsync_dir(d / sub)

    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = False, readonly: bool = False) -> "Database":
        """Open a database directory, creating it when ``create`` is true and it does not exist.

        A read-write handle brings an older catalog up to date on opening
        (it adds the audit log); a ``readonly`` handle never writes.
        """
        p = Path(path)
        if not (p / _MARKER).exists() and create:
            return cls.create(p, exist_ok=True)
        cls.probe(p)
        conn = cls._connect(p, readonly=readonly)
        db = cls(p, conn, readonly=readonly)
        try:
            if not readonly:
                db._migrate()
            db.catalog_id = db.get_setting("catalog_id")
            db._has_counts = _COUNTS_NAMES <= {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")}
        except sqlite3.DatabaseError as e:
            db.close()
            raise DatabaseError(f"{p / _CATALOG}: cannot read the catalog ({e})") from None
        except BaseException:
            db.close()
            raise
        return db

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

    def _migrate(self) -> None:
        """Add what older catalogs lack: the audit log (with a baseline of the exhibits on file), an id, indexes."""
        names = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger', 'index')")}
        if "vectors_exhibit" not in names:  # an exhibit's vectors by exhibit (deletion, digests), ibin < 0.1.1
            with self.write() as cur:
                cur.execute("CREATE INDEX IF NOT EXISTS vectors_exhibit ON vectors(exhibit)")
        if not _COUNTS_NAMES <= names:  # counts kept by triggers, since 2026-12-04: counted once here
            with self.write() as cur:
                for stmt in _COUNTS_STATEMENTS:
                    cur.execute(stmt)
                self._recount(cur)
        if {"audit", "audit_no_update", "audit_no_delete"} <= names and self.get_setting("catalog_id"):
            return
        with self.write() as cur:
            for stmt in _audit.SCHEMA_STATEMENTS:
                cur.execute(stmt)
            if cur.execute("SELECT value FROM settings WHERE key = 'catalog_id'").fetchone() is None:
                cur.execute("INSERT INTO settings VALUES ('catalog_id', ?)", (uuid.uuid4().hex,))
            if cur.execute("SELECT 1 FROM audit LIMIT 1").fetchone() is not None:
                return
            rows = cur.execute(f"SELECT {self._COLS}, ingested_by FROM exhibits ORDER BY rowid").fetchall()
            _audit.append(cur, "audit-start", None, {
                "note": "audit log started on a database made by an older ibin", "exhibits": len(rows)})
            for row in rows:
                rec = self._record(row[:-1], self._metadata([row[0]]).get(row[0], {}))
                details = self._ingest_details(rec, self._vector_digests(cur, rec.rowid))
                details["baseline"] = True
                _audit.append(cur, "ingest", row[-1] or "unknown", details)

    def close(self) -> None:
        self.store.close()
        self._indexes.clear()
        self._space_matrices.clear()
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

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def write(self) -> Iterator[sqlite3.Cursor]:
        """A write transaction (``BEGIN IMMEDIATE``), waiting for other writers.

        Everything done through the cursor commits together, or not at all.
        Inside a ``write()`` block, :meth:`audit` and another ``write()``
        join the same transaction, so a feature can record a change and its
        audit entry atomically::

            with db.write() as cur:
                cur.execute("INSERT INTO dispositions ...")
                db.audit("disposition", exhibit="Q1", lead="K7", decision="identification")
        """
        if self.readonly:
            raise DatabaseError(f"{self.path}: opened read-only")
        if self._writing:
            yield self._conn.cursor()
            return
        if self._snapshot_depth:
            raise DatabaseError(f"{self.path}: cannot write while a read snapshot is open")
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
        self._writing = True
        try:
            point("catalog.begin")
            yield cur
            point("catalog.commit")
        except BaseException as e:
            self._writing = False
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(e, sqlite3.Error):  # disk full, I/O error, damaged catalog...
                raise DatabaseError(f"{self.path}: the catalog refused the change ({e}); nothing was written") from e
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise DatabaseError(f"{self.path}: the catalog could not commit ({e})") from None
        finally:
            self._writing = False
        point("catalog.committed")

    @contextmanager
    def snapshot(self) -> Iterator["Database"]:
        """Read one committed state of the catalog throughout the block.

        Searches run inside a snapshot, so exhibits committed or deleted by
        other processes meanwhile never make a lead list inconsistent. Feature
        records are never rewritten, so the records the snapshot refers to
        stay readable. Writing inside a snapshot is refused.
        """
        if self._writing or self._snapshot_depth:
            self._snapshot_depth += 1
            try:
                yield self
            finally:
                self._snapshot_depth -= 1
            return
        try:
            self._conn.execute("BEGIN DEFERRED")
            self._conn.execute("SELECT COUNT(*) FROM settings").fetchone()  # the snapshot starts here
        except sqlite3.Error as e:
            raise DatabaseError(f"{self.path}: cannot read the catalog ({e})") from None
        self._snapshot_depth = 1
        try:
            yield self
        finally:
            self._snapshot_depth = 0
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass

    # ------------------------------------------------------------------ audit log
    def audit(self, event: str, *, user: str | None = None, **details: Any) -> AuditEntry:
        """Append an entry to the database's audit log and return it.

        This is the one way features record what examiners and pipelines do
        (the database itself records ingests, deletions, metadata edits and
        reindexing; the engine records searches). Inside a :meth:`write`
        block the entry joins that transaction; otherwise it commits on its
        own, durably, before this returns.

        Parameters
        ----------
        event : str
            Lower-case name of what happened (``"disposition"``, ``"export"``...):
            letters, digits, ``_``, ``.``, ``-``; at most 64 characters.
        user : str, optional
            Who did it; default ``$IBIN_USER``, ``$USER``/``$LOGNAME`` or the
            login name.
        **details
            JSON values (text, numbers, booleans, None, lists, mappings) saying
            what and which exhibits, e.g. ``exhibit="Q1", lead="K7",
            decision="elimination"``. NaN and infinity are refused.

        Returns
        -------
        AuditEntry
            With its sequence number and chain hash.

        Raises
        ------
        DatabaseError
            If the database is read-only, or the event or details are invalid
            (then nothing is written).
        """
        _audit.check_event(event)
        user = _audit.resolve_user(user)
        _audit.canonical_json(details)  # refuse before taking the write lock
        with self.write() as cur:
            return _audit.append(cur, event, user, details)

    def audit_log(self, *, event: str | None = None, exhibit: str | None = None,
                  last: int | None = None) -> list[AuditEntry]:
        """Entries of the audit log, oldest first, optionally only one event or one exhibit's."""
        if not self._has_audit():
            return []
        sql, args = "SELECT seq, at, user, event, details, prev, hash FROM audit WHERE 1", []
        if event is not None:
            sql += " AND event = ?"
            args.append(event)
        if exhibit is not None:  # entries naming the exhibit (id or in a lead list)
            sql += " AND instr(details, ?) > 0"
            args.append(json.dumps(exhibit, ensure_ascii=False))
        sql += " ORDER BY seq"
        entries = [_audit.entry_from_row(r) for r in self._conn.execute(sql, args)]
        if exhibit is not None:
            entries = [e for e in entries if _names_exhibit(e.details, exhibit)]
        return entries[-last:] if last else entries

    def audit_head(self) -> tuple[int, str]:
        """``(entries, hash of the newest entry)``; record the hash elsewhere to detect a rewritten log."""
        if not self._has_audit():
            return 0, _audit.GENESIS
        row = self._conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, _audit.GENESIS) if row is None else (int(row[0]), row[1])

    def _has_audit(self) -> bool:
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'").fetchone() is not None

    # ------------------------------------------------------------------ writing
    def find_source(self, sha256: str, kind: str) -> str | None:
        """Id of the exhibit already made from a source file with this SHA-256, if any."""
        row = self._conn.execute(
            "SELECT id FROM exhibits WHERE source_sha256 = ? AND kind = ?", (sha256, kind)
        ).fetchone()
        return None if row is None else row[0]

    def add(self, ex: NewExhibit, *, durable: bool = True) -> tuple[str, bool]:
        """Put an exhibit on file: feature record, catalog row, metadata, vectors and audit entry.

        The feature record is appended (and, with ``durable``, fsynced) first;
        the catalog rows and the ``ingest`` audit entry then commit in one
        transaction. A crash before that commit leaves only unreferenced
        bytes in the feature store; after it, the whole exhibit is on file.
        Without ``durable`` (for bulk loads that can be repeated) a power
        cut, though not a crash of the process, may lose the record of an
        exhibit whose row committed: ``ibin check`` would report it.

        Returns ``(id, added)``: ``added`` is False when the same source file
        (same SHA-256, same kind) is already on file, whose id is returned.

        Raises
        ------
        DuplicateExhibitError
            If the id is taken by an exhibit from a different source.
        DatabaseError
            If a field, metadata value or vector is invalid (nothing is written).
        """
        check_text("exhibit id", ex.id)
        if ex.user is not None:
            check_text("user name", ex.user)
        for what, v in (("kind", ex.kind), ("modality", ex.modality), ("source name", ex.source_name)):
            check_text(what, v)
        if not (isinstance(ex.source_sha256, str) and len(ex.source_sha256) == 64
                and all(c in "0123456789abcdef" for c in ex.source_sha256)):
            raise DatabaseError(f"source SHA-256 must be 64 lower-case hex digits, got {ex.source_sha256!r}")
        validate_metadata(ex.metadata)
        vectors = _check_vectors(ex.vectors)
        parts = _check_parts(ex.vector_parts, vectors)
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
            for space, v in vectors.items():
                have = self._space_dim(space)
                if have is not None and have != v.shape[1]:
                    raise DatabaseError(
                        f"descriptor space {space!r} holds {have}-value vectors; got {v.shape[1]} values")
            rowid = self._next_rowid(cur)
            ref = self.store.append(record, fsync=durable)
            at = _now()
            cur.execute(
                "INSERT INTO exhibits (rowid, id, kind, modality, source_name, source_sha256, ingested_at,"
                " ingested_by, seg, off, len, record_sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (rowid, ex.id, ex.kind, ex.modality, ex.source_name, ex.source_sha256, at, ex.user,
                 ref.segment, ref.offset, ref.length, ref.sha256),
            )
            cur.executemany(
                "INSERT INTO metadata (exhibit, key, value) VALUES (?,?,?)",
                [(rowid, k, v) for k, v in ex.metadata.items()],
            )
            for space, v in vectors.items():
                cur.executemany(
                    "INSERT INTO vectors (id, exhibit, space, part, vec) VALUES (?,?,?,?,?)",
                    [((rowid << _VECTOR_PART_BITS) | p, rowid, space, p, v[i].tobytes())
                     for i, p in enumerate(parts[space])],
                )
            rec = ExhibitRecord(rowid, ex.id, ex.kind, ex.modality, ex.source_name, ex.source_sha256, at, ref,
                                dict(ex.metadata))
            _audit.append(cur, "ingest", ex.user, self._ingest_details(rec, _digests(vectors, parts)))
            point("catalog.rows")
        return ex.id, True

    def _next_rowid(self, cur: sqlite3.Cursor) -> int:
        """A rowid never used before in this database (so a vector id never names two exhibits)."""
        top = cur.execute("SELECT MAX(rowid) FROM exhibits").fetchone()[0] or 0
        row = cur.execute("SELECT value FROM settings WHERE key = 'exhibits/last_rowid'").fetchone()
        rowid = max(int(top), int(row[0]) if row else 0) + 1
        cur.execute("INSERT OR REPLACE INTO settings VALUES ('exhibits/last_rowid', ?)", (str(rowid),))
        return rowid

    @staticmethod
    def _ingest_details(rec: "ExhibitRecord", digests: dict) -> dict:
        return {
            "id": rec.id, "rowid": rec.rowid, "kind": rec.kind, "modality": rec.modality,
            "source_name": rec.source_name, "source_sha256": rec.source_sha256,
            "record": {"segment": rec.ref.segment, "offset": rec.ref.offset, "length": rec.ref.length,
                       "sha256": rec.ref.sha256},
            "vectors": digests, "metadata": dict(rec.metadata),
        }

    def _vector_digests(self, cur, rowid: int) -> dict:
        rows = cur.execute("SELECT space, part, vec FROM vectors WHERE exhibit = ? ORDER BY space, part",
                           (rowid,)).fetchall()
        return vector_digests(rows)

    def delete(self, exhibit_id: str, *, user: str | None = None, reason: str | None = None) -> "ExhibitRecord":
        """Remove an exhibit from the catalog and record it in the audit log.

        The exhibit's catalog row, metadata and vectors go in one
        transaction with the ``delete`` audit entry; its feature record
        stays in the append-only store, unreferenced, and index files drop
        its vectors at the next ``ibin reindex`` (searches filter them out
        meanwhile). Returns the record that was deleted.
        """
        if reason is not None:
            check_text("reason", reason, allow_empty=True)
        user = _audit.resolve_user(user)
        with self.write() as cur:
            row = cur.execute(f"SELECT {self._COLS} FROM exhibits WHERE id = ?", (exhibit_id,)).fetchone()
            if row is None:
                raise ExhibitNotFoundError(f"no exhibit {exhibit_id!r} in {self.path}")
            rec = self._record(row, self._metadata([row[0]]).get(row[0], {}))
            cur.execute("DELETE FROM exhibits WHERE rowid = ?", (rec.rowid,))
            details = {"id": rec.id, "rowid": rec.rowid, "source_sha256": rec.source_sha256,
                       "record_sha256": rec.ref.sha256, "metadata": rec.metadata}
            if reason:
                details["reason"] = reason
            _audit.append(cur, "delete", user, details)
            point("catalog.rows")
        for idx in self._indexes.values():
            idx.remove(np.arange(rec.rowid << _VECTOR_PART_BITS, (rec.rowid + 1) << _VECTOR_PART_BITS, dtype=np.int64))
        return rec

    def set_metadata(self, exhibit_id: str, values: Mapping[str, str] | None = None, unset: Iterable[str] = (), *,
                     user: str | None = None, reason: str | None = None) -> dict[str, str]:
        """Correct an exhibit's metadata: set ``values``, remove the keys in ``unset``.

        The change and a ``metadata`` audit entry (old values, new values,
        who, why) commit together. A change that changes nothing writes
        nothing. Returns the exhibit's metadata afterwards.

        Raises
        ------
        ExhibitNotFoundError
            If there is no such exhibit.
        DatabaseError
            If a key or value is not valid text, or a key to unset is not set.
        ValueError
            If nothing is to change, or a key is both set and unset.
        """
        values = dict(values or {})
        unset = list(dict.fromkeys(unset))  # each key once, in the order given
        validate_metadata(values)
        for k in unset:
            check_text("metadata key", k)
        if reason is not None:
            check_text("reason", reason, allow_empty=True)
        user = _audit.resolve_user(user)
        if not values and not unset:
            raise ValueError("give at least one KEY=VALUE to set or a key to unset")
        both = sorted(set(values) & set(unset))
        if both:
            raise ValueError(f"metadata {both[0]!r} is both set and unset")
        with self.write() as cur:
            row = cur.execute("SELECT rowid FROM exhibits WHERE id = ?", (exhibit_id,)).fetchone()
            if row is None:
                raise ExhibitNotFoundError(f"no exhibit {exhibit_id!r} in {self.path}")
            rowid = int(row[0])
            before = self._metadata([rowid]).get(rowid, {})
            missing = [k for k in unset if k not in before]
            if missing:
                raise DatabaseError(f"exhibit {exhibit_id!r} has no metadata {missing[0]!r} to unset")
            changed = {k: v for k, v in values.items() if before.get(k) != v}
            if not changed and not unset:
                return before
            cur.executemany("INSERT OR REPLACE INTO metadata (exhibit, key, value) VALUES (?,?,?)",
                            [(rowid, k, v) for k, v in changed.items()])
            cur.executemany("DELETE FROM metadata WHERE exhibit = ? AND key = ?", [(rowid, k) for k in unset])
            after = self._metadata([rowid]).get(rowid, {})
            details = {"id": exhibit_id, "rowid": rowid, "set": changed, "unset": unset,
                       "before": {k: before.get(k) for k in [*changed, *unset]}, "metadata": after}
            if reason:
                details["reason"] = reason
            _audit.append(cur, "metadata", user, details)
            point("catalog.rows")
        return after

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
        """Exhibits on file (of one kind): from the counts the catalog keeps, without reading its rows."""
        if self._has_counts:
            if kind is None:
                return int(self._conn.execute("SELECT SUM(n) FROM counts WHERE key LIKE 'exhibits/%'").fetchone()[0] or 0)
            return self._kept("exhibits/" + kind)
        sql, args = self._filter_sql(kind, None, None)  # an older catalog opened read-only
        return int(self._conn.execute(f"SELECT COUNT(*) FROM exhibits WHERE {sql}", args).fetchone()[0])

    def _kept(self, key: str) -> int:
        """One of the counts the catalog keeps (0 when it has none by that key)."""
        row = self._conn.execute("SELECT n FROM counts WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _recount(cur: sqlite3.Cursor) -> None:
        """Set the kept counts to what the rows give (inside a write)."""
        cur.execute("DELETE FROM counts")
        cur.execute(f"INSERT INTO counts (key, n) {_RECOUNT}")

    def counts_kept(self) -> tuple[dict[str, int], dict[str, int]] | None:
        """``(kept, actual)``: the counts the catalog keeps (non-zero) and the ones its rows give; None without kept counts."""
        if not self._has_counts:
            return None
        kept = {k: int(n) for k, n in self._conn.execute("SELECT key, n FROM counts WHERE n != 0")}
        return kept, {k: int(n) for k, n in self._conn.execute(_RECOUNT)}

    def load(self, rec: ExhibitRecord, *, verify: bool = False) -> tuple[dict[str, np.ndarray], dict]:
        """The exhibit's stored arrays (read-only views) and attributes."""
        return self.store.read(rec.ref, verify=verify)

    def array_shapes(self, rec: ExhibitRecord) -> dict[str, tuple[int, ...]]:
        """The shapes of the exhibit's stored arrays, from the record's header alone (cheaper than :meth:`load`)."""
        return self.store.shapes(rec.ref)

    def prefetch(self, records: Iterable[ExhibitRecord]) -> int:
        """Have the operating system read these exhibits' stored arrays in, all at once (advisory; returns bytes asked for).

        Call before reading many records in turn (a search's candidates): on a
        store larger than the page cache each record would otherwise cost its
        own disk round trip. See :meth:`FeatureStore.prefetch`.
        """
        return self.store.prefetch([rec.ref for rec in records])

    # ------------------------------------------------------------------ vectors
    def _space_dim(self, space: str) -> int | None:
        row = self._conn.execute("SELECT vec FROM vectors WHERE space = ? LIMIT 1", (space,)).fetchone()
        return None if row is None else len(row[0]) // 4

    def index_path(self, space: str) -> Path:
        """The index cache file of a descriptor space."""
        return self.path / "index" / f"{space.replace('/', '-')}.faiss"

    def max_vector_id(self, *, latest: bool = False) -> int:
        """The largest vector id the catalog can have issued so far.

        Inside a :meth:`snapshot` this is as of the snapshot, unless
        ``latest``: then it is read from the last committed state (an index
        file saved by another process meanwhile may hold newer ids).
        """
        conn = self._conn
        if latest and self._snapshot_depth:
            conn = sqlite3.connect(f"file:{self.path / _CATALOG}?mode=ro", uri=True, timeout=30.0)
        try:
            top = conn.execute("SELECT MAX(rowid) FROM exhibits").fetchone()[0] or 0
            hw = conn.execute("SELECT value FROM settings WHERE key = 'exhibits/last_rowid'").fetchone()
        finally:
            if conn is not self._conn:
                conn.close()
        return ((max(int(top), int(hw[0]) if hw else 0) + 1) << _VECTOR_PART_BITS) - 1

    def index(self, space: str, *, factory: str | None = None) -> VectorIndex | None:
        """The FAISS index of a descriptor space, caught up with the catalog (None when the space is empty).

        ``factory`` asks for a kind of index (:class:`VectorIndex`): an index
        file of another kind is rebuilt from the catalog and saved in its
        place. ``None`` takes the index file as it is (exact ``"Flat"`` when
        there is none), so a search never trains an index: the engine
        changes the kind after an ingest, and other processes keep searching
        their loaded index until they open the new file.

        The index file is used only when its SHA-256, catalog id and
        watermark check out; otherwise the index is rebuilt from the
        catalog. A read-write handle saves the caught-up index atomically
        when there was no file, or once the vectors not in the file reach
        :data:`UNSAVED_SHARE` of the index: a save rewrites the whole file
        (2 GB of polar signatures at 1M exhibits), so the few vectors of an
        ingest are read from the catalog by the processes that load it
        until then.
        """
        dim = self._space_dim(space)
        if dim is None:
            return None
        idx = self._indexes.get(space)
        path = self.index_path(space)
        if idx is None or idx.dim != dim or (factory is not None and idx.factory != factory):
            idx = VectorIndex.load(path, dim, factory, catalog_id=self.catalog_id)
            if idx is not None and idx.watermark > self.max_vector_id(latest=True):
                # vector ids the catalog never issued: the catalog was restored from an older copy
                log.warning("%s: index file is ahead of the catalog; it will be rebuilt", path)
                idx = None
            idx = idx or VectorIndex(dim, factory or "Flat")
        rows = self._conn.execute(
            "SELECT id, vec FROM vectors WHERE space = ? AND id > ? ORDER BY id", (space, idx.watermark)
        ).fetchall()
        if rows:
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            idx.add(ids, vecs)
        self._set_index(space, idx)
        if idx.unsaved and not self.readonly and (idx.unsaved >= UNSAVED_SHARE * idx.ntotal or not path.exists()):
            try:
                idx.save(path, catalog_id=self.catalog_id)
            except OSError as e:  # the cache is optional; the catalog is the truth
                log.warning("%s: could not save the index cache (%s)", path, e)
        return idx

    def reindex(self, *, factory: str = "Flat", user: str | None = None) -> dict[str, int]:
        """Rebuild every index file from the catalog's vectors; returns vectors per space.

        Index files of spaces no longer in the catalog and temporary files
        left by interrupted saves are removed. The counts the catalog keeps
        are set again from its rows (``counts_corrected`` in the audit entry
        names any that were off). Recorded in the audit log.
        """
        if self.readonly:
            raise DatabaseError(f"{self.path}: opened read-only")
        recounted = []
        if self._has_counts:  # the kept counts, set again from the rows (they name the spaces rebuilt here)
            with self.write() as cur:
                before = dict(cur.execute("SELECT key, n FROM counts WHERE n != 0").fetchall())
                self._recount(cur)
                after = dict(cur.execute("SELECT key, n FROM counts WHERE n != 0").fetchall())
                recounted = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        built: dict[str, VectorIndex] = {}
        with self.snapshot():
            for space in self.spaces():
                dim = self._space_dim(space)
                idx = VectorIndex(dim, factory)
                last = 0
                while True:
                    rows = self._conn.execute(
                        "SELECT id, vec FROM vectors WHERE space = ? AND id > ? ORDER BY id LIMIT 65536",
                        (space, last)).fetchall()
                    if not rows:
                        break
                    ids = np.array([r[0] for r in rows], dtype=np.int64)
                    idx.add(ids, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim))
                    last = int(ids[-1])
                built[space] = idx
        folder = self.path / "index"
        for space, idx in built.items():
            idx.save(self.index_path(space), catalog_id=self.catalog_id)
            self._set_index(space, idx)
        keep = {self.index_path(s).name for s in built}
        removed = []
        for f in sorted([*folder.glob("*.faiss"), *folder.glob("*.faiss.json")]):
            if f.name not in keep:
                try:
                    f.unlink()
                except FileNotFoundError:
                    pass
                removed.append(f.name)
        swept = sweep_temporaries(folder)
        counts = {s: idx.ntotal for s, idx in built.items()}
        self.audit("reindex", user=user, spaces=counts, removed_files=removed, temporaries_removed=swept,
                   **({"counts_corrected": recounted} if recounted else {}))
        return counts

    def check(self, *, records: bool = True):
        """Verify catalog, feature store, index files and audit log agree; see :func:`check_database`."""
        from ._check import check_database

        return check_database(self, records=records)

    def space_size(self, space: str) -> int:
        """Vectors the catalog holds in a space (a loaded index's count when it is current)."""
        idx = self._indexes.get(space)
        if idx is not None:
            return idx.ntotal
        return self._count_vectors(space)

    def search_vectors(self, space: str, queries: np.ndarray, k: int, *,
                       allowed_rowids: np.ndarray | None = None,
                       factory: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest stored vectors: ``(scores (n, k), exhibit rowids (n, k), parts (n, k))``; -1 = empty.

        ``factory`` as for :meth:`index` (default: the index on file).
        """
        idx = self.index(space, factory=factory)
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if idx is None:
            empty = np.full((len(q), k), -1, np.int64)
            return np.full((len(q), k), -np.inf, np.float32), empty, empty.copy()
        n, live = self._count_vectors(space), None
        if idx.ntotal != n:  # exhibits deleted since the index was saved or loaded: dropped here once
            live = self._drop_deleted(space, idx)
        if allowed_rowids is not None:  # the exhibits' vectors, whatever their parts (a bitmap selector)
            D, I = idx.search(q, k, allowed_groups=np.asarray(allowed_rowids, dtype=np.int64),
                              group_bits=_VECTOR_PART_BITS)
        else:
            # what may still linger (vectors newer than this snapshot) is filtered by the catalog's ids
            D, I = idx.search(q, k, allowed=None if idx.ntotal == n else live)
        rowids = np.where(I >= 0, I >> _VECTOR_PART_BITS, -1)
        parts = np.where(I >= 0, I & ((1 << _VECTOR_PART_BITS) - 1), -1)
        return D, rowids, parts

    def _count_vectors(self, space: str) -> int:
        if self._has_counts:
            return self._kept("vectors/" + space)
        return int(self._conn.execute("SELECT COUNT(*) FROM vectors WHERE space = ?", (space,)).fetchone()[0])

    def _drop_deleted(self, space: str, idx: VectorIndex) -> np.ndarray:
        """Remove from this handle's index the vectors of exhibits no longer in the catalog; returns the space's ids.

        An index file saved before a deletion, or an index loaded before
        another process deleted exhibits, still holds their vectors; until
        2026-12-04 every search then filtered them with the list of the
        space's ids read from the catalog (0.35 s at 1M exhibits, each
        search, for as long as the process ran). Now they are removed once.
        Only ids the catalog had issued as of this snapshot are taken for
        deleted: a vector newer than the snapshot (an index file saved by
        another process since) stays.
        """
        held, live = idx.ids(), self._all_vector_ids(space)
        gone = held[(held <= self.max_vector_id()) & ~np.isin(held, live)]
        if len(gone):
            idx.remove(gone)
        return live

    def _all_vector_ids(self, space: str) -> np.ndarray:
        rows = self._conn.execute("SELECT id FROM vectors WHERE space = ?", (space,)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def _set_index(self, space: str, idx: VectorIndex) -> None:
        """This handle's index of a space; a replaced one's matrix is let go (it may hold 2 GB at 1M)."""
        if self._indexes.get(space) is not idx:
            self._space_matrices.pop(space, None)
        self._indexes[space] = idx

    def space_matrix(self, space: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All vectors of an exact space: ``(exhibit rowids, parts, vectors)`` (vectors not copied).

        May include exhibits deleted by another process since the index was
        loaded; callers drop rowids the catalog no longer has. Read-only
        arrays, the same objects until the index changes (a search asks
        several times: 1M ids cost ~2 ms to read out of FAISS each time).
        """
        idx = self.index(space)
        if idx is None:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, 0), np.float32)
        got = self._space_matrices.get(space)
        if got is None or got[0] is not idx or got[1] != idx.version:
            ids, x = idx.matrix()
            rowids, parts = ids >> _VECTOR_PART_BITS, ids & ((1 << _VECTOR_PART_BITS) - 1)
            rowids.flags.writeable = parts.flags.writeable = False
            got = self._space_matrices[space] = (idx, idx.version, (rowids, parts, x))
        return got[2]

    def vectors_of(self, rowid: int, space: str) -> np.ndarray:
        rows = self._conn.execute(
            "SELECT vec FROM vectors WHERE exhibit = ? AND space = ? ORDER BY part", (int(rowid), space)
        ).fetchall()
        return np.stack([np.frombuffer(r[0], dtype=np.float32) for r in rows]) if rows else np.empty((0, 0), np.float32)

    def spaces(self) -> dict[str, int]:
        """Vectors per descriptor space holding any."""
        if self._has_counts:
            return {k[len("vectors/"):]: int(n) for k, n in self._conn.execute(
                "SELECT key, n FROM counts WHERE key LIKE 'vectors/%' AND n > 0 ORDER BY key")}
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
            if idx is not None:  # as loaded by this handle
                spaces[space]["file_version"] = idx.file_version
                spaces[space]["read_in_place"] = idx.mapped
        total = self.count()
        n_audit, head = self.audit_head()
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
            "audit": {"entries": n_audit, "head": head},
        }


#: Characters refused in text fields besides C0/C1 controls: line and paragraph
#: separators, and bidirectional overrides, embeddings and isolates, which can
#: make an exhibit id or a metadata value display as something it is not.
_REFUSED_CHARS = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_MAX_TEXT = 4096
_MAX_METADATA_KEYS = 256


def check_text(what: str, value, *, allow_empty: bool = False) -> str:
    """Refuse a value that is not clean text; return it unchanged.

    Text fields (exhibit ids, metadata keys and values, reasons) must be
    ``str``, valid Unicode (no lone surrogates), at most 4096 characters,
    without control characters other than tab, line or paragraph separators
    or bidirectional-override characters; ids and keys must not be blank.

    Raises
    ------
    DatabaseError
        Naming the field and what is wrong.
    """
    if not isinstance(value, str):
        raise DatabaseError(f"{what} must be text, got {type(value).__name__} {value!r:.60}")
    if not allow_empty and not value.strip():
        raise DatabaseError(f"{what} must not be empty")
    if len(value) > _MAX_TEXT:
        raise DatabaseError(f"{what} is longer than {_MAX_TEXT} characters")
    for c in value:
        cat = unicodedata.category(c)
        if (cat == "Cc" and c != "\t") or cat == "Cs" or c in _REFUSED_CHARS:
            kind = "a lone surrogate (not valid Unicode)" if cat == "Cs" else f"the control character U+{ord(c):04X}"
            raise DatabaseError(f"{what} {value!r:.80} contains {kind}")
    return value


def validate_metadata(metadata: Mapping) -> dict[str, str]:
    """Check exhibit metadata before anything is written; return it as a plain dict.

    Keys and values must be text (see :func:`check_text`); values may be
    empty; at most 256 keys.

    Raises
    ------
    DatabaseError
        Naming the key and what is wrong with it or its value.
    """
    if not isinstance(metadata, Mapping):
        raise DatabaseError(f"metadata must be a mapping of text to text, got {type(metadata).__name__}")
    if len(metadata) > _MAX_METADATA_KEYS:
        raise DatabaseError(f"at most {_MAX_METADATA_KEYS} metadata keys are kept, got {len(metadata)}")
    out = {}
    for k, v in metadata.items():
        check_text("metadata key", k)
        check_text(f"metadata value of {k!r}", v, allow_empty=True)
        out[k] = v
    return out


# kept for callers of the old private name
_check_text = check_text


def _check_vectors(vectors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    if not vectors:
        raise DatabaseError("an exhibit needs at least one descriptor vector (it could never be found otherwise)")
    for space, vecs in vectors.items():
        check_text("descriptor space", space)
        v = np.ascontiguousarray(np.atleast_2d(vecs), dtype=np.float32)
        if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
            raise DatabaseError(f"descriptor vectors of {space!r} must be (parts, values), got shape {v.shape}")
        if len(v) > (1 << _VECTOR_PART_BITS):
            raise DatabaseError(f"too many vectors for one exhibit in {space!r} ({len(v)} > {1 << _VECTOR_PART_BITS})")
        if not np.isfinite(v).all():
            raise DatabaseError(f"descriptor vectors of {space!r} hold NaN or infinite values")
        out[space] = v
    return out


def _check_parts(vector_parts: Mapping[str, Iterable[int]], vectors: Mapping[str, np.ndarray]) -> dict[str, tuple]:
    """The part number of each vector row (default 0, 1, 2...), checked: distinct, in [0, 256)."""
    out = {}
    for space, v in vectors.items():
        parts = tuple(int(p) for p in vector_parts.get(space, range(len(v))))
        if len(parts) != len(v) or len(set(parts)) != len(parts) or not all(
                0 <= p < (1 << _VECTOR_PART_BITS) for p in parts):
            raise DatabaseError(f"bad vector parts for space {space!r}: {parts}; one distinct part in "
                                f"0..{(1 << _VECTOR_PART_BITS) - 1} per vector")
        out[space] = parts
    unknown = set(vector_parts) - set(vectors)
    if unknown:
        raise DatabaseError(f"vector parts given for spaces without vectors: {sorted(unknown)}")
    return out


def _digests(vectors: Mapping[str, np.ndarray], parts: Mapping[str, tuple]) -> dict:
    return vector_digests((space, p, v[i].tobytes()) for space, v in vectors.items()
                          for i, p in enumerate(parts[space]))


def vector_digests(rows: Iterable[tuple[str, int, bytes]]) -> dict:
    """Per-space digest of one exhibit's ``(space, part, vec)`` rows, as its audit entry records it."""
    by: dict[str, list[tuple[int, bytes]]] = {}
    for space, part, vec in rows:
        by.setdefault(space, []).append((int(part), bytes(vec)))
    out = {}
    for space, parts in sorted(by.items()):
        parts.sort()
        out[space] = {"parts": len(parts), "dim": len(parts[0][1]) // 4,
                      "sha256": hashlib.sha256(b"".join(v for _, v in parts)).hexdigest()}
    return out


def _names_exhibit(details, exhibit: str) -> bool:
    if isinstance(details, dict):
        for k, v in details.items():
            if k in ("id", "exhibit", "query_exhibit") and v == exhibit:
                return True
            if _names_exhibit(v, exhibit):
                return True
    elif isinstance(details, list):
        return any(_names_exhibit(v, exhibit) or v == exhibit for v in details)
    return False


def _read_marker(p: Path) -> dict:
    try:
        marker = json.loads((p / _MARKER).read_text())
        if not isinstance(marker, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise DatabaseError(f"{p}: unreadable {_MARKER} ({e})") from None
    if marker.get("format") != FORMAT:
        raise DatabaseError(f"{p}: not an ibin database ({_MARKER} says {marker.get('format')!r})")
    try:
        version = int(marker.get("version", 0))
    except (TypeError, ValueError):
        raise DatabaseError(f"{p}: {_MARKER} has no valid version") from None
    if version > FORMAT_VERSION:
        raise DatabaseError(
            f"{p}: database format {version} is newer than this ibin understands ({FORMAT_VERSION})"
        )
    return marker


def _sweep_creations(p: Path) -> None:
    """Remove temporary folders of creations of ``p`` whose process died before renaming them in."""
    for d in p.parent.glob(f".{p.name}.creating-*"):
        try:
            pid = int(d.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
