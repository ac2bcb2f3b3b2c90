"""The engine: the only module that wires the pipeline stages together.

``scan`` -> ``features`` -> ``index`` (candidates) -> ``correlate`` (re-rank)
-> ``leads``. Each public function here is one job an examiner or a
pipeline runs:

* :func:`ingest` puts scans on file;
* :func:`search` returns the lead list of a new scan (it is not added);
* :func:`search_exhibits` re-correlates exhibits already on file;
* :func:`compare` compares two scans directly;
* :func:`record_disposition` records an examiner's verdict on a lead.
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
    "load_prepared",
    "record_disposition",
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
) -> IngestReport:
    """Put scans on file, one exhibit per scan.

    Each file is read, validated and prepared before anything is written; a
    file that fails is reported and skipped, and nothing already on file
    changes. A file already on file (same SHA-256) is not added again.

    Parameters
    ----------
    db : Database
        An open database (``ibin.open_database(path, create=True)``).
    sources : sequence of path or Scan
        Scan files (or scans in memory, which need a ``sha256`` or get one
        computed from their values).
    kind : str
        ``"cartridge"``.
    ids : sequence of str, optional
        Exhibit ids, one per source; default: the file stem.
    metadata : mapping of str to str, optional
        Metadata for every exhibit of the batch (caliber, case number...).
    pixel_um : float, optional
        Pixel size for images and ``.npy`` files.
    user : str, optional
        Who ingests (default: ``$IBIN_USER`` or the login name).
    progress : callable, optional
        Called as ``progress(done, total, result)`` after each source.

    Returns
    -------
    IngestReport
    """
    from .index import NewExhibit

    _check_kind(kind)
    if ids is not None and len(ids) != len(sources):
        raise ValueError(f"{len(ids)} ids given for {len(sources)} sources")
    md = {str(k): v for k, v in (metadata or {}).items()}
    for k, v in md.items():
        if not isinstance(v, str):
            raise DatabaseError(f"metadata value of {k!r} must be text, got {type(v).__name__}")
    who = _user(user)
    params_json = _cartridge_params_json()
    report = IngestReport()
    total = len(sources)
    for i, src in enumerate(sources):
        name = src.source if isinstance(src, Scan) else os.fspath(src)
        try:
            scan = _as_scan(src, pixel_um)
            sha = scan.sha256 or _values_sha(scan)
            ex_id = ids[i] if ids is not None else (Path(scan.source).stem if scan.source else f"scan-{sha[:12]}")
            existing = db.find_source(sha, kind)
            if existing is not None:
                res = IngestResult(str(name), existing, "duplicate", f"already on file as {existing}")
            else:
                prep = prepare(scan, kind)
                db.ensure_setting(_cartridge_settings_key(prep.modality), params_json)
                arrays, attrs = prep.to_arrays()
                attrs = dict(attrs, source_info=dict(scan.info), source_pixel_um=[scan.pixel_x_um, scan.pixel_y_um])
                new = NewExhibit(
                    id=ex_id, kind=kind, modality=prep.modality,
                    source_name=Path(scan.source).name if scan.source else ex_id,
                    source_sha256=sha, arrays=arrays, attrs=attrs,
                    vectors={f"{kind}/{prep.modality}": prep.descriptor[None]},
                    metadata=md, user=who,
                )
                got, added = db.add(new)
                res = IngestResult(str(name), got, "added" if added else "duplicate",
                                   "" if added else f"already on file as {got}")
        except (IbinError, ValueError) as e:
            res = IngestResult(str(name), None, "failed", str(e))
        report.results.append(res)
        if progress is not None:
            progress(i + 1, total, res)
    return report


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


def _with_dispositions(db, query_id: str | None, leads: tuple[Lead, ...]) -> tuple[Lead, ...]:
    """Each lead with the examiner's current disposition of the pair (``"not reviewed"`` when none)."""
    from dataclasses import replace

    from .index import Disposition

    on_file = db.reviews.of(query_id) if query_id is not None else {}
    return tuple(replace(l, extra={**l.extra, "disposition": on_file.get(l.id, Disposition(query_id or "", l.id)).to_dict()})
                 for l in leads)


def _details(prep, ranked) -> dict:
    return {"query": prep, "comparisons": {rec.id: r for _, rec, r in ranked if not isinstance(r, str)}}


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
    details: dict | None = None,
) -> LeadList:
    """Lead list of a new scan against the database (the scan is not added).

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
    details : dict, optional
        If given, ``details[query_id]`` receives ``{"query": prepared query,
        "comparisons": {lead id: AreaComparison}}`` for the leads returned
        (what a report draws, without preparing or comparing again).

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
    cands = _candidates(db, prep, kind, p)
    t2 = time.perf_counter()
    ranked = _rerank(q, cands, db)
    t3 = time.perf_counter()
    leads = tuple(_lead(i + 1, rec, r) for i, (_, rec, r) in enumerate(ranked[: p.top]))
    qid = query_id or scan.name
    if details is not None:
        details[qid] = _details(prep, ranked[: p.top])
    # a scan already on file (same SHA-256) shows the verdicts recorded for that exhibit
    leads = _with_dispositions(db, db.find_source(scan.sha256 or _values_sha(scan), kind), leads)
    return LeadList(
        query_id=qid, query_file=scan.source, kind=kind, leads=leads,
        database_path=str(db.path), database_exhibits=db.count(kind=kind),
        timing_ms={"prepare": (t1 - t0) * 1e3, "candidates": (t2 - t1) * 1e3, "rerank": (t3 - t2) * 1e3,
                   "total": (t3 - t0) * 1e3},
    )


def search_exhibits(
    db,
    ids: Iterable[str] | None = None,
    *,
    kind: str = "cartridge",
    params: SearchParams | None = None,
    details: dict | None = None,
) -> Iterator[LeadList]:
    """Lead lists of exhibits already on file, each against all the others.

    Parameters
    ----------
    db : Database
    ids : iterable of str, optional
        Exhibits to use as queries; all of ``kind`` when None.
    kind : str
    params : SearchParams, optional
    details : dict, optional
        As for :func:`search`, filled for every query (keep it only for a
        few queries: it holds their prepared arrays).

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
        cands = _candidates(db, q.prep, kind, p, exclude_rowid=rec.rowid)
        t2 = time.perf_counter()
        ranked = _rerank(q, cands, db, cache, query_rowid=rec.rowid, pairs=pairs)
        t3 = time.perf_counter()
        leads = _with_dispositions(db, rec.id, tuple(_lead(i + 1, r2, r) for i, (_, r2, r) in enumerate(ranked[: p.top])))
        if details is not None:
            details[rec.id] = _details(q.prep, ranked[: p.top])
        yield LeadList(
            query_id=rec.id, query_file=rec.source_name, kind=kind, leads=leads,
            database_path=str(db.path), database_exhibits=total,
            timing_ms={"prepare": (t1 - t0) * 1e3, "candidates": (t2 - t1) * 1e3, "rerank": (t3 - t2) * 1e3,
                       "total": (t3 - t0) * 1e3},
        )


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


# ---------------------------------------------------------------- review


def load_prepared(db, exhibit_id: str):
    """The prepared arrays of an exhibit on file.

    Returns
    -------
    ibin.features.PreparedCartridge
    """
    rec = db.get(exhibit_id)
    _check_kind(rec.kind)
    return _load_prepared(db, rec)


def record_disposition(db, query_id: str, lead_id: str, status: str, *, comment: str = "",
                       user: str | None = None):
    """Record an examiner's disposition of a lead: ``"hit"``, ``"no hit"`` or ``"not reviewed"``.

    The verdict belongs to the pair of exhibits (see :mod:`ibin.index._reviews`);
    it appears in their lead lists, in ``ibin info`` and, for hits, in
    ``ibin hits``, and goes to the audit log when the database keeps one.

    Parameters
    ----------
    db : Database
    query_id, lead_id : str
        Exhibits on file.
    status : str
    comment : str
    user : str, optional
        Who records it (default: ``$IBIN_USER`` or the login name).

    Returns
    -------
    ibin.index.Disposition
    """
    return db.reviews.record(query_id, lead_id, status, comment=comment, user=_user(user))
