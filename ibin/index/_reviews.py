"""Examiners' dispositions of leads, kept in the catalog.

An examiner who has looked at a lead records a **disposition**: ``"hit"``
(the two exhibits were fired by the same firearm), ``"no hit"`` or
``"not reviewed"`` (withdraws an earlier verdict), with a comment. A
disposition belongs to the *pair* of exhibits, whichever of them was the
query of the lead list it was recorded from: the verdict on A against B is
the verdict on B against A.

The table is append-only, so the history of every pair is kept; the current
disposition of a pair is its latest row. It is created on the first write,
so databases made before it existed open unchanged (readers see no
dispositions) and older ibin versions ignore it. Rows refer to exhibits by
catalog rowid and go when an exhibit is deleted (``ON DELETE CASCADE``).

A confirmed hit links the two exhibits' cases (IBIN's "hit": two
investigations tied by one firearm); :meth:`Reviews.hits` lists the pairs
whose current disposition is ``"hit"`` and :meth:`Reviews.linked_groups`
the exhibits they join, transitively.

When the database keeps an audit log (a ``Database.audit(event, **details)``
method), every disposition is also written to it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sqlite3
from dataclasses import dataclass

from ..errors import ExhibitNotFoundError

__all__ = ["DISPOSITION_STATUSES", "Disposition", "Hit", "Reviews"]

log = logging.getLogger(__name__)

#: The dispositions an examiner can record, in the order a page offers them.
DISPOSITION_STATUSES = ("not reviewed", "no hit", "hit")

_TABLE = "dispositions"
_DDL = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    seq INTEGER PRIMARY KEY,
    exhibit_a INTEGER NOT NULL REFERENCES exhibits(rowid) ON DELETE CASCADE,
    exhibit_b INTEGER NOT NULL REFERENCES exhibits(rowid) ON DELETE CASCADE,
    query INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in DISPOSITION_STATUSES)})),
    comment TEXT NOT NULL DEFAULT '',
    by TEXT,
    at TEXT NOT NULL,
    CHECK (exhibit_a < exhibit_b),
    CHECK (query = exhibit_a OR query = exhibit_b)
);
CREATE INDEX IF NOT EXISTS dispositions_a ON {_TABLE}(exhibit_a, exhibit_b, seq);
CREATE INDEX IF NOT EXISTS dispositions_b ON {_TABLE}(exhibit_b, exhibit_a, seq);
"""

_MAX_COMMENT = 4096


@dataclass(frozen=True)
class Disposition:
    """The examiner's verdict on one pair of exhibits.

    Attributes
    ----------
    query : str
        Exhibit whose lead list the verdict was recorded from.
    lead : str
        The other exhibit.
    status : {"not reviewed", "no hit", "hit"}
    comment : str
    by : str or None
        Who recorded it; None for a pair never reviewed.
    at : str or None
        When (ISO 8601, UTC); None for a pair never reviewed.
    """

    query: str
    lead: str
    status: str = "not reviewed"
    comment: str = ""
    by: str | None = None
    at: str | None = None

    def to_dict(self) -> dict:
        """The form lead lists carry: ``{"status", "comment", "by", "at"}``."""
        return {"status": self.status, "comment": self.comment, "by": self.by, "at": self.at}


@dataclass(frozen=True)
class Hit:
    """A confirmed hit: two exhibits fired by the same firearm, and their cases.

    ``case_a``/``case_b`` are the exhibits' values of the case metadata key
    (None when absent); ``links_cases`` is true when both are known and
    differ, i.e. the hit ties two investigations together.
    """

    exhibit_a: str
    exhibit_b: str
    case_a: str | None
    case_b: str | None
    comment: str
    by: str | None
    at: str
    metadata_a: dict
    metadata_b: dict

    @property
    def links_cases(self) -> bool:
        return self.case_a is not None and self.case_b is not None and self.case_a != self.case_b

    def to_dict(self) -> dict:
        return {"exhibits": [self.exhibit_a, self.exhibit_b], "cases": [self.case_a, self.case_b],
                "links_cases": self.links_cases, "comment": self.comment, "by": self.by, "at": self.at,
                "metadata": [self.metadata_a, self.metadata_b]}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Reviews:
    """Dispositions of a :class:`~ibin.index.Database` (``db.reviews``)."""

    def __init__(self, db):
        self._db = db

    # ------------------------------------------------------------------ helpers
    @property
    def _conn(self) -> sqlite3.Connection:
        return self._db._conn

    def _exists(self) -> bool:
        return self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_TABLE,)
        ).fetchone() is not None

    def _rowid(self, cur, exhibit_id: str) -> int:
        row = cur.execute("SELECT rowid FROM exhibits WHERE id = ?", (exhibit_id,)).fetchone()
        if row is None:
            raise ExhibitNotFoundError(f"no exhibit {exhibit_id!r} in {self._db.path}")
        return int(row[0])

    # ------------------------------------------------------------------ writing
    def record(self, query_id: str, lead_id: str, status: str, *, comment: str = "",
               user: str | None = None) -> Disposition:
        """Record the disposition of a lead (appended; the pair's history is kept).

        Parameters
        ----------
        query_id, lead_id : str
            Exhibits on file: the query of the lead list and the lead.
        status : {"not reviewed", "no hit", "hit"}
        comment : str
            Free text (up to 4096 characters, no control characters but tab
            and newline).
        user : str, optional
            Who records it.

        Returns
        -------
        Disposition
            As stored.

        Raises
        ------
        ValueError
            For an unknown status, a query equal to the lead, or a bad comment.
        ExhibitNotFoundError
            If either exhibit is not on file.
        """
        if status not in DISPOSITION_STATUSES:
            raise ValueError(f"unknown disposition {status!r}; expected one of {', '.join(map(repr, DISPOSITION_STATUSES))}")
        if query_id == lead_id:
            raise ValueError(f"an exhibit cannot be a lead of itself ({query_id!r})")
        comment = "" if comment is None else comment
        if not isinstance(comment, str):
            raise ValueError(f"comment must be text, got {type(comment).__name__}")
        if len(comment) > _MAX_COMMENT:
            raise ValueError(f"comment is longer than {_MAX_COMMENT} characters")
        if any((ord(c) < 32 and c not in "\t\n\r") or c == "\x7f" for c in comment):
            raise ValueError("comment contains control characters")
        if user is not None and (not isinstance(user, str) or any(ord(c) < 32 for c in user) or len(user) > 200):
            raise ValueError("user must be a short line of text")
        at = _now()
        with self._db.write() as cur:
            for stmt in _DDL.split(";"):  # executescript would commit: run the DDL inside this transaction
                if stmt.strip():
                    cur.execute(stmt)
            q, l = self._rowid(cur, query_id), self._rowid(cur, lead_id)
            a, b = min(q, l), max(q, l)
            cur.execute(
                f"INSERT INTO {_TABLE} (exhibit_a, exhibit_b, query, status, comment, by, at) VALUES (?,?,?,?,?,?,?)",
                (a, b, q, status, comment, user, at),
            )
        d = Disposition(query_id, lead_id, status, comment, user, at)
        audit = getattr(self._db, "audit", None)
        if callable(audit):
            audit("disposition", query=query_id, lead=lead_id, status=status, comment=comment, by=user)
        log.info("%s: %s vs %s -> %s", self._db.path, query_id, lead_id, status)
        return d

    # ------------------------------------------------------------------ reading
    def of(self, exhibit_id: str) -> dict[str, Disposition]:
        """Current dispositions of every pair the exhibit is part of, by the other exhibit's id.

        Pairs never reviewed are absent; an exhibit not on file has none.
        """
        if not self._exists():
            return {}
        rows = self._conn.execute(
            f"""SELECT e.id, o.id, d.status, d.comment, d.by, d.at
                FROM {_TABLE} d
                JOIN exhibits e ON e.id = ?
                JOIN exhibits o ON o.rowid = (CASE WHEN d.exhibit_a = e.rowid THEN d.exhibit_b ELSE d.exhibit_a END)
                WHERE (d.exhibit_a = e.rowid OR d.exhibit_b = e.rowid)
                  AND d.seq = (SELECT MAX(seq) FROM {_TABLE} x
                               WHERE x.exhibit_a = d.exhibit_a AND x.exhibit_b = d.exhibit_b)""",
            (exhibit_id,),
        ).fetchall()
        return {o: Disposition(q, o, s, c, by, at) for q, o, s, c, by, at in rows}

    def get(self, query_id: str, lead_id: str) -> Disposition:
        """Current disposition of a pair (``"not reviewed"`` with no author when none was recorded)."""
        return self.of(query_id).get(lead_id, Disposition(query_id, lead_id))

    def history(self, query_id: str, lead_id: str) -> list[Disposition]:
        """Every disposition recorded for the pair, oldest first (``query`` is the side it was recorded from)."""
        if not self._exists():
            return []
        rows = self._conn.execute(
            f"""SELECT qe.id, CASE WHEN d.query = d.exhibit_a THEN eb.id ELSE ea.id END,
                       d.status, d.comment, d.by, d.at
                FROM {_TABLE} d
                JOIN exhibits ea ON ea.rowid = d.exhibit_a
                JOIN exhibits eb ON eb.rowid = d.exhibit_b
                JOIN exhibits qe ON qe.rowid = d.query
                WHERE (ea.id = ? AND eb.id = ?) OR (ea.id = ? AND eb.id = ?)
                ORDER BY d.seq""",
            (query_id, lead_id, lead_id, query_id),
        ).fetchall()
        return [Disposition(*r) for r in rows]

    def _current(self, status: str | None = None) -> list[tuple]:
        if not self._exists():
            return []
        where = "" if status is None else "AND d.status = ?"
        return self._conn.execute(
            f"""SELECT d.exhibit_a, d.exhibit_b, ea.id, eb.id, d.status, d.comment, d.by, d.at
                FROM {_TABLE} d
                JOIN exhibits ea ON ea.rowid = d.exhibit_a
                JOIN exhibits eb ON eb.rowid = d.exhibit_b
                WHERE d.seq = (SELECT MAX(seq) FROM {_TABLE} x
                               WHERE x.exhibit_a = d.exhibit_a AND x.exhibit_b = d.exhibit_b) {where}
                ORDER BY d.at, d.seq""",
            () if status is None else (status,),
        ).fetchall()

    def hits(self, *, case_key: str = "case") -> list[Hit]:
        """Pairs whose current disposition is ``"hit"``, oldest first.

        Parameters
        ----------
        case_key : str
            Metadata key holding an exhibit's case number.
        """
        rows = self._current("hit")
        md = self._db._metadata(sorted({r[0] for r in rows} | {r[1] for r in rows}))
        out = []
        for ra, rb, a, b, _, comment, by, at in rows:
            ma, mb = md.get(ra, {}), md.get(rb, {})
            out.append(Hit(a, b, ma.get(case_key), mb.get(case_key), comment, by, at, ma, mb))
        return out

    def linked_groups(self, *, case_key: str = "case") -> list[dict]:
        """Exhibits joined by hits, transitively: ``[{"exhibits": [...], "cases": [...]}]``, largest first."""
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        cases: dict[str, str | None] = {}
        for h in self.hits(case_key=case_key):
            cases[h.exhibit_a], cases[h.exhibit_b] = h.case_a, h.case_b
            parent[find(h.exhibit_a)] = find(h.exhibit_b)
        groups: dict[str, list[str]] = {}
        for x in parent:
            groups.setdefault(find(x), []).append(x)
        out = [{"exhibits": sorted(g), "cases": sorted({cases[x] for x in g if cases[x] is not None})}
               for g in groups.values()]
        return sorted(out, key=lambda g: (-len(g["exhibits"]), g["exhibits"]))

    def counts_by_exhibit(self) -> dict[str, dict[str, int]]:
        """For every exhibit with a current verdict: ``{"hit": n, "no hit": m}`` over the pairs it is part of."""
        out: dict[str, dict[str, int]] = {}
        for row in self._current():
            for ex in (row[2], row[3]):
                c = out.setdefault(ex, {"hit": 0, "no hit": 0})
                if row[4] in c:
                    c[row[4]] += 1
        return out

    def summary(self) -> dict:
        """Counts of current dispositions: ``{"reviewed_pairs", "hit", "no hit", "hits_linking_cases"}``."""
        rows = self._current()
        counts = {s: 0 for s in DISPOSITION_STATUSES if s != "not reviewed"}
        for r in rows:
            if r[4] in counts:
                counts[r[4]] += 1
        out = {"reviewed_pairs": sum(counts.values()), **counts}
        out["hits_linking_cases"] = sum(h.links_cases for h in self.hits())
        return out
