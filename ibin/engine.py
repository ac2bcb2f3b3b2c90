"""The engine: the only module that wires the pipeline stages together.

``scan`` -> ``features`` -> ``index`` (candidates) -> ``correlate`` (re-rank)
-> ``leads``. Each public function here is one job an examiner or a
pipeline runs:

* :func:`ingest` puts scans on file;
* :func:`search` returns the lead list of a new scan (it is not added);
* :func:`search_exhibits` re-correlates exhibits already on file;
* :func:`compare` compares two scans directly.
"""

from __future__ import annotations

import getpass
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .errors import DatabaseError, IbinError, ScanError
from .leads import Lead, LeadList
from .scan import Scan, load_scan

__all__ = [
    "SearchParams",
    "IngestResult",
    "IngestReport",
    "ingest",
    "search",
    "search_exhibits",
    "compare",
    "prepare",
    "open_database",
    "KINDS",
]

log = logging.getLogger(__name__)

KINDS = ("cartridge",)


@dataclass(frozen=True)
class SearchParams:
    """Per-search settings.

    Attributes
    ----------
    top : int
        Leads returned.
    candidates : int
        Exhibits the index hands to the full re-rank (at least ``top``).
    filters : mapping of str to str
        Metadata that candidates must match exactly (applied inside the
        index search).
    """

    top: int = 10
    candidates: int = 100
    filters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.top < 1:
            raise ValueError("top must be at least 1")
        if self.candidates < 1:
            raise ValueError("candidates must be at least 1")


@dataclass(frozen=True)
class IngestResult:
    """What happened to one input file."""

    file: str
    id: str | None
    status: str  # "added" | "duplicate" | "failed"
    message: str = ""


@dataclass
class IngestReport:
    """Outcome of an ingest batch."""

    results: list[IngestResult] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(r.status == "added" for r in self.results)

    @property
    def duplicates(self) -> int:
        return sum(r.status == "duplicate" for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.results)

    def summary(self) -> str:
        return f"{self.added} added, {self.duplicates} already on file, {self.failed} failed"


# ---------------------------------------------------------------- helpers


def open_database(path: str | os.PathLike, *, create: bool = False, readonly: bool = False):
    """Open (or create) a database directory; see :class:`ibin.index.Database`."""
    from .index import Database

    return Database.open(path, create=create, readonly=readonly)


def _cartridge_settings_key(modality: str) -> str:
    return f"features/cartridge/{modality}"


def _cartridge_params_json() -> str:
    from .features import FEATURES_VERSION, CartridgeParams

    return json.dumps({"version": FEATURES_VERSION, "params": CartridgeParams().to_dict()}, sort_keys=True)


def prepare(scan: Scan, kind: str = "cartridge"):
    """Prepare a scan for comparison (the ``features`` stage)."""
    _check_kind(kind)
    from .features import prepare_cartridge

    return prepare_cartridge(scan)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def _as_scan(x: Scan | str | os.PathLike, pixel_um: float | None) -> Scan:
    if isinstance(x, Scan):
        return x
    return load_scan(x, pixel_um=pixel_um)


def _user(user: str | None) -> str:
    if user:
        return user
    for var in ("IBIN_USER", "USER", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database in some containers
        return "unknown"


# ---------------------------------------------------------------- ingest


def ingest(
    db,
    sources: Sequence[Scan | str | os.PathLike],
    *,
    kind: str = "cartridge",
    ids: Sequence[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    pixel_um: float | None = None,
    user: str | None = None,
    progress: Callable[[int, int, IngestResult], None] | None = None,
    on_wait: Callable[[float], None] | None = None,
) -> IngestReport:
    """Put scans on file, one exhibit per scan.

    Each file is read, validated and prepared before anything is written; a
    file that fails is reported and skipped, and nothing already on file
    changes. A file already on file (same SHA-256) is not added again. Each
    exhibit goes in atomically (feature record, catalog row, vectors and an
    ``ingest`` audit entry) and is on file once its result is reported.

    Parameters
    ----------
    db : Database or path
        An open database, or the path of one. A path is opened (and the
        database created if missing) only when the first scan is ready to go
        in, so a batch whose every file is refused leaves the path exactly
        as it was; the database is closed on return.
    sources : sequence of path or Scan
        Scan files (or scans in memory, which need a ``sha256`` or get one
        computed from their values).
    kind : str
        ``"cartridge"``.
    ids : sequence of str, optional
        Exhibit ids, one per source; default: the file stem.
    metadata : mapping of str to str, optional
        Metadata for every exhibit of the batch (caliber, case number...);
        checked before any file is read.
    pixel_um : float, optional
        Pixel size for images and ``.npy`` files.
    user : str, optional
        Who ingests (default: ``$IBIN_USER`` or the login name).
    progress : callable, optional
        Called as ``progress(done, total, result)`` after each source.
    on_wait : callable, optional
        Called as ``on_wait(seconds)`` when a write has waited long for
        another process (see :attr:`ibin.index.Database.on_wait`).

    Returns
    -------
    IngestReport

    Raises
    ------
    DatabaseError
        If the metadata or ids are not valid text, or the database path
        cannot be used; nothing is written then.
    """
    from .index import Database, NewExhibit, check_text, validate_metadata

    _check_kind(kind)
    if ids is not None and len(ids) != len(sources):
        raise ValueError(f"{len(ids)} ids given for {len(sources)} sources")
    md = validate_metadata(metadata or {})
    for i in ids or ():
        check_text("exhibit id", i)
    who = check_text("user name", _user(user))
    owned = not isinstance(db, Database)
    path = db if owned else None
    handle = None if owned else db
    if owned:
        Database.probe(path, create=True)  # refuse an unusable path before reading any file
    params_json = _cartridge_params_json()
    report = IngestReport()
    total = len(sources)
    try:
        for i, src in enumerate(sources):
            name = src.source if isinstance(src, Scan) else os.fspath(src)
            try:
                scan = _as_scan(src, pixel_um)
                sha = scan.sha256 or _values_sha(scan)
                ex_id = ids[i] if ids is not None else (Path(scan.source).stem if scan.source else f"scan-{sha[:12]}")
                existing = handle.find_source(sha, kind) if handle is not None else None
                if existing is not None:
                    res = IngestResult(str(name), existing, "duplicate", f"already on file as {existing}")
                else:
                    prep = prepare(scan, kind)
                    arrays, attrs = prep.to_arrays()
                    attrs = dict(attrs, source_info=dict(scan.info), source_pixel_um=[scan.pixel_x_um, scan.pixel_y_um])
                    new = NewExhibit(
                        id=ex_id, kind=kind, modality=prep.modality,
                        source_name=Path(scan.source).name if scan.source else ex_id,
                        source_sha256=sha, arrays=arrays, attrs=attrs,
                        vectors={f"{kind}/{prep.modality}": prep.descriptor[None]},
                        metadata=md, user=who,
                    )
                    if handle is None:  # the first scan ready to go in opens (or creates) the database
                        try:
                            handle = Database.open(path, create=True)
                        except DatabaseError as e:
                            raise _Abort(e) from None
                    if on_wait is not None:
                        handle.on_wait = on_wait
                    handle.ensure_setting(_cartridge_settings_key(prep.modality), params_json)
                    got, added = handle.add(new)
                    res = IngestResult(str(name), got, "added" if added else "duplicate",
                                       "" if added else f"already on file as {got}")
            except (IbinError, ValueError) as e:
                res = IngestResult(str(name), None, "failed", str(e))
            report.results.append(res)
            if progress is not None:
                progress(i + 1, total, res)
    except _Abort as a:  # the database cannot be opened: a problem of the batch, not of one file
        raise a.error from None
    finally:
        if owned and handle is not None:
            handle.close()
    return report


class _Abort(Exception):
    """Carries an error that stops a whole batch through the per-file handler."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def _values_sha(scan: Scan) -> str:
    import hashlib

    h = hashlib.sha256(np.ascontiguousarray(scan.values).tobytes())
    h.update(f"{scan.pixel_x_um},{scan.pixel_y_um},{scan.modality}".encode())
    return h.hexdigest()


# ---------------------------------------------------------------- search


class _Prepared:
    """A prepared exhibit with its pyramid built once (re-used across comparisons)."""

    __slots__ = ("prep", "pyramid")

    def __init__(self, prep):
        from .correlate import Pyramid

        self.prep = prep
        self.pyramid = Pyramid(prep.surface, prep.pixel_um)


def _load_prepared(db, rec):
    from .features import PreparedCartridge

    arrays, attrs = db.load(rec)
    return PreparedCartridge.from_arrays(arrays, attrs)


def _rerank(query: _Prepared, records, db, cache: dict | None = None, *, query_rowid: int | None = None,
            pairs: dict | None = None) -> list[tuple[float, object, object]]:
    """Compare the query with each record; best first.

    ``cache`` keeps prepared exhibits by rowid; ``pairs`` keeps comparisons
    of two exhibits on file by their rowids, so a batch compares each pair
    once (the comparison is symmetric; the reverse view is derived).
    """
    from .correlate import compare_prepared

    out = []
    for rec in records:
        try:
            key = None
            if pairs is not None and query_rowid is not None:
                key = (min(query_rowid, rec.rowid), max(query_rowid, rec.rowid))
                hit = pairs.get(key)
                if hit is not None and (key[0] == query_rowid or rec.rowid in cache):
                    # the stored view has the lower rowid as A; swapping needs A's scan centre
                    r = hit if key[0] == query_rowid else hit.swapped(cache[rec.rowid].prep.scan_centre_um)
                    out.append((r.score, rec, r))
                    continue
            cand = cache.get(rec.rowid) if cache is not None else None
            if cand is None:
                cand = _Prepared(_load_prepared(db, rec))
                if cache is not None:
                    cache[rec.rowid] = cand
            r = compare_prepared(query.prep, cand.prep, pyramids=(query.pyramid, cand.pyramid))
            if key is not None:
                pairs[key] = r if key[0] == query_rowid else r.swapped(query.prep.scan_centre_um)
            out.append((r.score, rec, r))
        except (IbinError, ValueError) as e:
            out.append((-math.inf, rec, f"failed: {e}"))
    out.sort(key=lambda t: (-t[0], t[1].id))
    return out


def _lead(rank: int, rec, r) -> Lead:
    if isinstance(r, str):
        return Lead(rank=rank, id=rec.id, score=float("-inf"), status=r, metadata=dict(rec.metadata))
    return Lead(
        rank=rank, id=rec.id, score=r.score, cmc=r.cmc, cells=r.cells, ccf=r.ccf,
        rotation_deg=r.rotation_deg, dx_um=r.dx_um, dy_um=r.dy_um, metadata=dict(rec.metadata),
    )


def _candidates(db, prep, kind: str, params: SearchParams, exclude_rowid: int | None = None):
    space = f"{kind}/{prep.modality}"
    allowed = None
    if params.filters:
        allowed = db.rowids(kind=kind, modality=prep.modality, filters=params.filters)
        if exclude_rowid is not None:
            allowed = allowed[allowed != exclude_rowid]
    elif exclude_rowid is not None:
        allowed = db.rowids(kind=kind, modality=prep.modality)
        allowed = allowed[allowed != exclude_rowid]
    k = max(params.candidates, params.top)
    _, rowids, _ = db.search_vectors(space, prep.descriptor[None], k, allowed_rowids=allowed)
    ids = [int(r) for r in rowids[0] if r >= 0]
    recs = db.get_rowids(ids)
    return [recs[i] for i in ids if i in recs]


def search(
    db,
    query: Scan | str | os.PathLike,
    *,
    kind: str = "cartridge",
    params: SearchParams | None = None,
    pixel_um: float | None = None,
    query_id: str | None = None,
    user: str | None = None,
) -> LeadList:
    """Lead list of a new scan against the database (the scan is not added).

    The candidates and the re-rank read one snapshot of the database, so
    ingests and deletions by other processes meanwhile never make the list
    inconsistent. On a read-write database the search is recorded in the
    audit log (query file and SHA-256, parameters, leads returned, user).

    Parameters
    ----------
    db : Database
    query : path or Scan
    kind : str
    params : SearchParams, optional
    pixel_um : float, optional
        Pixel size for image and ``.npy`` queries.
    query_id : str, optional
        Name of the query in the lead list (default: the file stem).
    user : str, optional
        Who searches, for the audit log (default: ``$IBIN_USER`` or the login name).

    Returns
    -------
    LeadList
    """
    _check_kind(kind)
    p = params or SearchParams()
    t0 = time.perf_counter()
    scan = _as_scan(query, pixel_um)
    prep = prepare(scan, kind)
    db.ensure_setting(_cartridge_settings_key(prep.modality), _cartridge_params_json()) if not db.readonly else None
    q = _Prepared(prep)
    t1 = time.perf_counter()
    with db.snapshot():
        cands = _candidates(db, prep, kind, p)
        t2 = time.perf_counter()
        ranked = _rerank(q, cands, db)
        t3 = time.perf_counter()
        on_file = db.count(kind=kind)
    leads = tuple(_lead(i + 1, rec, r) for i, (_, rec, r) in enumerate(ranked[: p.top]))
    ll = LeadList(
        query_id=query_id or scan.name, query_file=scan.source, kind=kind, leads=leads,
        database_path=str(db.path), database_exhibits=on_file,
        timing_ms={"prepare": (t1 - t0) * 1e3, "candidates": (t2 - t1) * 1e3, "rerank": (t3 - t2) * 1e3,
                   "total": (t3 - t0) * 1e3},
    )
    _audit_search(db, ll, p, user, {"id": ll.query_id, "file": scan.source, "sha256": scan.sha256})
    return ll


def _audit_search(db, ll: LeadList, p: SearchParams, user: str | None, query: dict) -> None:
    """Record a search in the audit log (read-only handles cannot write, and do not)."""
    if db.readonly:
        return
    db.audit(
        "search", user=_user(user), kind=ll.kind, query=query, top=p.top, candidates=p.candidates,
        filters=dict(p.filters), exhibits_on_file=ll.database_exhibits,
        leads=[{"id": l.id, "score": round(float(l.score), 6) if math.isfinite(l.score) else None}
               for l in ll.leads],
    )


def search_exhibits(
    db,
    ids: Iterable[str] | None = None,
    *,
    kind: str = "cartridge",
    params: SearchParams | None = None,
    user: str | None = None,
) -> Iterator[LeadList]:
    """Lead lists of exhibits already on file, each against all the others.

    Each lead list reads one snapshot of the database and, on a
    read-write database, is recorded in the audit log.

    Parameters
    ----------
    db : Database
    ids : iterable of str, optional
        Exhibits to use as queries; all of ``kind`` when None.
    kind : str
    params : SearchParams, optional
    user : str, optional
        Who searches, for the audit log.

    Yields
    ------
    LeadList
        One per query, never listing the query as its own lead.
    """
    _check_kind(kind)
    p = params or SearchParams()
    recs = db.list(kind=kind) if ids is None else [db.get(i) for i in ids]
    cache: dict[int, _Prepared] = {}
    pairs: dict = {}
    total = db.count(kind=kind)
    for rec in recs:
        t0 = time.perf_counter()
        if rec.kind != kind:
            raise ScanError(None, f"exhibit {rec.id!r} is a {rec.kind}, not a {kind}")
        q = cache.get(rec.rowid)
        if q is None:
            q = _Prepared(_load_prepared(db, rec))
            cache[rec.rowid] = q
        t1 = time.perf_counter()
        with db.snapshot():
            cands = _candidates(db, q.prep, kind, p, exclude_rowid=rec.rowid)
            t2 = time.perf_counter()
            ranked = _rerank(q, cands, db, cache, query_rowid=rec.rowid, pairs=pairs)
            t3 = time.perf_counter()
        leads = tuple(_lead(i + 1, r2, r) for i, (_, r2, r) in enumerate(ranked[: p.top]))
        ll = LeadList(
            query_id=rec.id, query_file=rec.source_name, kind=kind, leads=leads,
            database_path=str(db.path), database_exhibits=total,
            timing_ms={"prepare": (t1 - t0) * 1e3, "candidates": (t2 - t1) * 1e3, "rerank": (t3 - t2) * 1e3,
                       "total": (t3 - t0) * 1e3},
        )
        _audit_search(db, ll, p, user, {"exhibit": rec.id})
        yield ll


# ---------------------------------------------------------------- compare


def compare(a: Scan | str | os.PathLike, b: Scan | str | os.PathLike, *, kind: str = "cartridge",
            pixel_um: float | None = None):
    """Compare two scans directly (no database).

    Returns
    -------
    ibin.correlate.AreaComparison
        Score, CMC count, CCF and the alignment that brings ``b`` onto ``a``.
    """
    from .correlate import compare_prepared

    _check_kind(kind)
    pa = prepare(_as_scan(a, pixel_um), kind)
    pb = prepare(_as_scan(b, pixel_um), kind)
    return compare_prepared(pa, pb)
