"""The audit log: an append-only, hash-chained record of every change and search.

The log is the table ``audit`` of the catalog. An entry is written in the
same SQLite transaction as the change it records, so an exhibit is on file
exactly when its ``ingest`` entry is, and a crash can lose neither without
the other. Each entry holds::

    seq      1, 2, 3, ... (no gaps)
    at       UTC time, ISO 8601 with microseconds
    user     who did it (``--user``, ``$IBIN_USER`` or the login name)
    event    what was done: ingest, delete, metadata, search, reindex, ...
    details  canonical JSON (sorted keys, no NaN): which exhibits, what changed
    prev     hash of the previous entry (64 zeros for the first)
    hash     SHA-256 of the canonical JSON array [seq, at, user, event, details, prev]

Changing, removing or inserting an entry breaks the chain at that entry,
which ``ibin check`` reports. SQLite triggers refuse ``UPDATE`` and
``DELETE`` on the table, so no ibin code path and no careless SQL can
rewrite it. A chain can still be recomputed whole by someone with write
access to the file: record the head hash (``ibin audit DB --head``)
somewhere else, a case file or a second system, to detect that too.

Because ``ingest``, ``delete`` and ``metadata`` entries carry the full state
they set, ``ibin check`` replays the log and compares the result with the
catalog: an exhibit row or metadata value changed outside ibin shows up as
a difference.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import json
import os
import re
import sqlite3
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..errors import DatabaseError

__all__ = ["AuditEntry", "SCHEMA", "SCHEMA_STATEMENTS", "GENESIS", "append", "canonical_json", "default_user", "entry_hash",
           "verify_chain"]

SCHEMA_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    event TEXT NOT NULL,
    details TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
)""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
)
SCHEMA = ";\n".join(SCHEMA_STATEMENTS) + ";\n"

#: ``prev`` of the first entry.
GENESIS = "0" * 64

_EVENT_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit log (see the module docstring for the fields)."""

    seq: int
    at: str
    user: str
    event: str
    details: dict
    prev: str
    hash: str

    def to_dict(self) -> dict:
        return {"seq": self.seq, "at": self.at, "user": self.user, "event": self.event,
                "details": self.details, "prev": self.prev, "hash": self.hash}


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value`` (sorted keys, compact, UTF-8, no NaN or infinity).

    Raises
    ------
    DatabaseError
        If ``value`` holds something JSON cannot represent exactly.
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise DatabaseError(f"audit details must be JSON values (text, numbers, lists, mappings): {e}") from None


def entry_hash(seq: int, at: str, user: str, event: str, details_json: str, prev: str) -> str:
    """SHA-256 (hex) that chains an entry to ``prev``."""
    body = json.dumps([seq, at, user, event, details_json, prev], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def default_user(user: str | None = None) -> str:
    """``user`` if given, else ``$IBIN_USER``, ``$USER``, ``$LOGNAME`` or the login name."""
    if user:
        return user
    for var in ("IBIN_USER", "USER", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database in some containers
        return "unknown"


def resolve_user(user: str | None) -> str:
    """The user an entry is recorded under (see :func:`default_user`), checked to be clean text."""
    return _check_user(default_user(user))


def _check_user(user: str) -> str:
    if not isinstance(user, str) or not user.strip():
        raise DatabaseError(f"the user name must be non-empty text, got {user!r}")
    if len(user) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in user):
        raise DatabaseError(f"the user name {user!r} is too long or contains control characters")
    return user


def check_event(event: str) -> str:
    if not isinstance(event, str) or not _EVENT_RE.match(event):
        raise DatabaseError(
            f"audit event names are lower-case words (letters, digits, '_', '.', '-'), got {event!r}"
        )
    return event


def _now_us() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def append(cur: sqlite3.Cursor, event: str, user: str | None, details: Mapping[str, Any]) -> AuditEntry:
    """Append an entry inside the caller's write transaction and return it."""
    check_event(event)
    who = resolve_user(user)
    body = canonical_json(dict(details))
    row = cur.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (1, GENESIS) if row is None else (int(row[0]) + 1, row[1])
    at = _now_us()
    h = entry_hash(seq, at, who, event, body, prev)
    cur.execute("INSERT INTO audit (seq, at, user, event, details, prev, hash) VALUES (?,?,?,?,?,?,?)",
                (seq, at, who, event, body, prev, h))
    return AuditEntry(seq, at, who, event, json.loads(body), prev, h)


def entry_from_row(row) -> AuditEntry:
    seq, at, user, event, details, prev, h = row
    try:
        d = json.loads(details)
    except (TypeError, ValueError):
        d = {"_unreadable": str(details)[:200]}
    return AuditEntry(int(seq), at, user, event, d if isinstance(d, dict) else {"_value": d}, prev, h)


def verify_chain(rows: Iterable[tuple]) -> tuple[list[tuple[int, str]], int, str]:
    """Check the chain of raw ``(seq, at, user, event, details, prev, hash)`` rows in ``seq`` order.

    Returns
    -------
    problems : list of (seq, message)
        Empty when the chain is intact.
    count : int
        Entries read.
    head : str
        Hash of the last entry (``GENESIS`` for an empty log).
    """
    problems: list[tuple[int, str]] = []
    expect_seq, prev, n = 1, GENESIS, 0
    for seq, at, user, event, details, p, h in rows:
        n += 1
        label = f"audit entry {seq} ({event}, {at})"
        if seq != expect_seq:
            problems.append((seq, f"{label}: expected entry {expect_seq} here; "
                                  f"{'entries are missing' if seq > expect_seq else 'the order is broken'}"))
        if p != prev:
            problems.append((seq, f"{label}: does not chain to the entry before it (prev hash {p[:12]}... "
                                  f"but that entry's hash is {prev[:12]}...); entries were removed, inserted or altered"))
        if entry_hash(seq, at, user, event, details, p) != h:
            problems.append((seq, f"{label}: its hash does not match its content (the entry was altered)"))
        try:
            json.loads(details)
        except (TypeError, ValueError):
            problems.append((seq, f"{label}: its details are not valid JSON"))
        expect_seq, prev = seq + 1, h
    return problems, n, prev
