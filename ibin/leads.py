"""Lead lists: the ranked answer to "which exhibits on file match this one?".

A :class:`LeadList` is the last stage of the pipeline. It renders as a
terminal table, JSON (one object; JSON Lines for several) or CSV. The JSON
layout is a stable file format::

    {"query": {"id", "file", "kind"},
     "leads": [{"rank", "id", "score", "cmc", "cells", "ccf", "rotation_deg",
                "dx_um", "dy_um", "status", "metadata", "disposition", ...}],
     "database": {"path", "exhibits"},
     "timing_ms": {"candidates", "rerank", "total"},
     "ibin": {"version", "schema"}}

Higher ``score`` means more similar. ``status`` is ``"ok"`` or says why a
comparison could not be made (``"failed: ..."``); failed leads rank last.
``disposition`` is the examiner's current verdict on the pair,
``{"status": "not reviewed" | "no hit" | "hit", "comment", "by", "at"}``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ._fs import fsync_dir

__all__ = ["Lead", "LeadList", "LeadListLog", "SCHEMA_VERSION", "render_table"]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Lead:
    """One exhibit on file, compared with the query.

    Attributes
    ----------
    rank : int
        1 = best.
    id : str
        Exhibit id.
    score : float
        Similarity; for cartridge cases the CMC count plus the areal CCF.
    cmc : int or None
        Congruent matching cells (cartridge cases).
    cells : int or None
        Cells that took part.
    ccf : float
        Areal (cartridge) or land (bullet) cross-correlation maximum.
    rotation_deg, dx_um, dy_um : float
        Alignment that brings the lead onto the query (see
        :class:`ibin.correlate.Alignment`).
    status : str
        ``"ok"`` or ``"failed: <reason>"``.
    metadata : dict
        The exhibit's metadata on file.
    extra : dict
        Kind-specific fields (bullets: ``phase``, ``lands``), merged into the
        JSON object.
    """

    rank: int
    id: str
    score: float
    cmc: int | None = None
    cells: int | None = None
    ccf: float | None = None
    rotation_deg: float | None = None
    dx_um: float | None = None
    dy_um: float | None = None
    status: str = "ok"
    metadata: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        for k in ("score", "ccf", "rotation_deg", "dx_um", "dy_um"):
            if isinstance(d[k], float):
                d[k] = None if not math.isfinite(d[k]) else round(d[k], 4 if k in ("score", "ccf") else 2)
        d.update(extra)
        return d


@dataclass(frozen=True)
class LeadList:
    """Ranked leads for one query."""

    query_id: str
    query_file: str | None
    kind: str
    leads: tuple[Lead, ...]
    database_path: str
    database_exhibits: int
    timing_ms: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.leads)

    def __iter__(self):
        return iter(self.leads)

    def __getitem__(self, i: int) -> Lead:
        return self.leads[i]

    @property
    def ids(self) -> list[str]:
        return [l.id for l in self.leads]

    def to_dict(self) -> dict:
        from . import __version__

        return {
            "query": {"id": self.query_id, "file": self.query_file, "kind": self.kind},
            "leads": [l.to_dict() for l in self.leads],
            "database": {"path": self.database_path, "exhibits": self.database_exhibits},
            "timing_ms": {k: round(v, 1) for k, v in self.timing_ms.items()},
            "ibin": {"version": __version__, "schema": SCHEMA_VERSION},
        }

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_csv(self, *, header: bool = True) -> str:
        cols = ["query", "rank", "id", "score", "cmc", "cells", "ccf", "rotation_deg", "dx_um", "dy_um", "status", "metadata"]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if header:
            w.writerow(cols)
        for l in self.leads:
            d = l.to_dict()
            w.writerow([self.query_id] + [d.get(c) if c != "metadata" else json.dumps(d["metadata"], ensure_ascii=False) for c in cols[1:]])
        return buf.getvalue()

    def to_table(self) -> str:
        return render_table(self)


def render_table(ll: LeadList) -> str:
    """A fixed-width table for a terminal."""
    head = f"Lead list for {ll.query_id} ({ll.kind}"
    head += f", {ll.query_file})" if ll.query_file else ")"
    head += f" against {ll.database_exhibits} exhibits in {ll.database_path}"
    extra_cols = "phase" in (ll.leads[0].extra if ll.leads else {})
    reviewed = any(_review(l) != "not reviewed" for l in ll.leads)
    cols = (["rank", "exhibit", "score", "cmc", "ccf", "rot°", "dx µm", "dy µm"] + (["phase"] if extra_cols else [])
            + (["review"] if reviewed else []) + ["metadata"])
    rows = []
    for l in ll.leads:
        md = ", ".join(f"{k}={v}" for k, v in l.metadata.items())
        if l.status != "ok":
            md = (l.status + ("; " + md if md else ""))
        row = [
            str(l.rank), l.id, f"{l.score:.2f}" if math.isfinite(l.score) else "-",
            "-" if l.cmc is None else str(l.cmc),
            "-" if l.ccf is None or not math.isfinite(l.ccf) else f"{l.ccf:.3f}",
            "-" if l.rotation_deg is None else f"{l.rotation_deg:.1f}",
            "-" if l.dx_um is None else f"{l.dx_um:.0f}",
            "-" if l.dy_um is None else f"{l.dy_um:.0f}",
        ]
        if extra_cols:
            row.append(str(l.extra.get("phase", "-")))
        if reviewed:
            row.append(_review(l))
        row.append(md)
        rows.append(row)
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    for r in rows:
        lines.append("  ".join(v.rjust(w) if i in (0, 2, 3, 4, 5, 6, 7) else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip())
    if not rows:
        lines.append("(no exhibits to compare with)")
    t = ll.timing_ms
    if t:
        lines.append(f"candidates {t.get('candidates', 0):.0f} ms, re-rank {t.get('rerank', 0):.0f} ms, total {t.get('total', 0):.0f} ms")
    return "\n".join(lines)


def _review(lead: Lead) -> str:
    d = lead.extra.get("disposition")
    return d.get("status", "not reviewed") if isinstance(d, dict) else "not reviewed"


def leads_to_jsonl(lists: Iterable[LeadList]) -> str:
    return "".join(l.to_json() + "\n" for l in lists)


class LeadListLog:
    """An append-only JSON Lines file of lead lists, which an interrupted sweep resumes.

    A cold-case sweep of a large database runs for hours (about 33 h for
    100,000 cartridge cases on a 2-core machine); each lead list is written
    as one line, flushed and synced to disk as soon as it arrives, so an
    interruption (a crash, a reboot, Ctrl-C) loses only the work on lists
    not yet written (in a sweep over worker processes, the chunks of
    queries in progress) and at most a last line cut off mid-write. A file
    it creates has its folder synced too, so a power cut cannot lose the
    file's name. Opened again on the same file, the log reads what is
    there: :attr:`done` holds the ``(kind, query id)`` already listed, which
    the sweep skips, and a last line cut off mid-write is removed (it is the
    only change ever made to lines already in the file).

    Parameters
    ----------
    path : str or PathLike
        The JSON Lines file (created when missing).
    database_path : str
        The database searched: a file holding lead lists of another
        database is refused rather than mixed with.

    Raises
    ------
    ValueError
        When a complete line of the file is not a lead list, or belongs to
        another database; the file is then left as it was.
    """

    def __init__(self, path: str | os.PathLike, database_path: str):
        self.path = os.fspath(path)
        self.done: set[tuple[str, str]] = set()
        self.dropped_partial = False
        created = False
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raw, created = b"", True
        lines = raw.split(b"\n")
        tail = lines.pop()  # what follows the last newline: b"" when the file ends with one
        for n, line in enumerate(lines, 1):
            if line.strip():
                self.done.add(self._query(line, n, database_path))
        parsed = None
        if tail.strip():
            try:  # a last line written whole but for its newline is kept
                parsed = _parse(tail)
            except ValueError:
                pass  # else it is the interrupted write of the last run
            if parsed is not None:
                self.done.add(self._same_database(parsed, database_path))
        self._f = open(self.path, "ab")
        if created:  # the new file's name in its folder, durable before any list is trusted to it
            fsync_dir(Path(self.path).resolve().parent)
        if tail:
            if parsed is not None:
                self._f.write(b"\n")
            else:
                self._f.truncate(len(raw) - len(tail))
                self.dropped_partial = True
            self._sync()

    def _query(self, line: bytes, n: int, database_path: str) -> tuple[str, str]:
        try:
            parsed = _parse(line)
        except ValueError as e:
            raise ValueError(f"{self.path}, line {n}: not a lead list of ibin ({e}); the file was left as it was") from None
        return self._same_database(parsed, database_path)

    def _same_database(self, parsed: tuple[str, str, str], database_path: str) -> tuple[str, str]:
        kind, qid, db = parsed
        if os.path.abspath(str(db)) != os.path.abspath(database_path):
            raise ValueError(f"{self.path} holds lead lists of another database ({db}); give another output file")
        return kind, qid

    def _sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def append(self, ll: LeadList) -> None:
        """Write one lead list as a line, on disk before returning."""
        self._f.write((ll.to_json() + "\n").encode())
        self._sync()
        self.done.add((ll.kind, ll.query_id))

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "LeadListLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _parse(line: bytes) -> tuple[str, str, str]:
    """``(kind, query id, database path)`` of one JSON line of a lead list; ValueError when it is not one."""
    try:
        d = json.loads(line)
        kind, qid, db = d["query"]["kind"], d["query"]["id"], d["database"]["path"]
        if not isinstance(qid, str) or not isinstance(kind, str):
            raise TypeError("query id and kind must be strings")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(str(e)) from None
    return kind, qid, db
