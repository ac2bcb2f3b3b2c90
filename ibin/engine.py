"""The engine: the only module that wires the pipeline stages together.

``scan`` -> ``features`` -> ``index`` (candidates) -> ``correlate`` (re-rank)
-> ``leads``. Each public function here is one job an examiner or a
pipeline runs:

* :func:`ingest` puts scans on file;
* :func:`search` returns the lead list of a new scan (it is not added);
* :func:`search_exhibits` re-correlates exhibits already on file;
* :func:`compare` compares two scans directly;
* :func:`record_disposition` records an examiner's verdict on a lead.

Cartridge cases are one scan per exhibit. A bullet is one exhibit holding
the scans of its lands (land-engraved areas) in land order; the same
functions take ``kind="bullet"`` and a list of land files where a
cartridge case takes one file. The bullet wiring sits in its own section at
the end of this module.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from . import _workers
from ._threads import map_threads
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
    "add_prepared",
    "open_database",
    "load_prepared",
    "record_disposition",
    "KINDS",
    "MISSING_LAND",
]

log = logging.getLogger(__name__)

KINDS = ("cartridge", "bullet")


@dataclass(frozen=True)
class SearchParams:
    """Per-search settings.

    A search runs in three stages: the index proposes ``candidates``
    exhibits by descriptor similarity; a coarse areal correlation screens
    them (:class:`ibin.correlate.QueryScreen`); the best ``verify`` go
    through the full comparison (registration and congruent matching
    cells), whose score orders the lead list. Leads identified by the
    congruent-cell criterion then expand the search: their own candidates
    are screened and compared in full too (query expansion, see
    :func:`_expand`), so a mate the query's signatures missed still comes up.

    Attributes
    ----------
    top : int
        Leads returned.
    candidates : int
        Exhibits the index hands to the screen.
    verify : int
        Exhibits that get the full comparison (at least ``top``).
    filters : mapping of str to str
        Metadata that candidates must match exactly (applied inside the
        index search).
    workers : int
        Cores a search uses: threads for the candidate search; for the screen
        and the full comparisons, worker processes kept for later searches of
        the same database (threads on databases of fewer than
        :data:`ibin._workers.MIN_EXHIBITS` exhibits, where starting them
        costs more than they save; see :mod:`ibin._workers`).
    one_off : bool
        The process makes this one lead list and ends (the command line's
        search with one scan or one exhibit): the screen and the full
        comparisons run in threads unless worker processes are already up
        for this database. Starting them (each imports the scientific
        stack) costs one lead list more than they save
        (``benchmarks/results/one_off.json``).
    """

    top: int = 10
    candidates: int = 300
    verify: int = 20
    filters: Mapping[str, str] = field(default_factory=dict)
    workers: int = 2
    one_off: bool = False

    def __post_init__(self) -> None:
        for name in ("top", "candidates", "verify", "workers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")

    @property
    def n_verify(self) -> int:
        return max(self.verify, self.top)


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


def _check_prepared_alike(db, key: str, value: str, what: str) -> bool:
    """Raise unless the exhibits on file were prepared as this ibin prepares (``value`` under ``key``).

    Returns whether the setting is on file (False: nothing of the kind yet).
    """
    on_file = db.get_setting(key)
    if on_file is None or on_file == value:
        return on_file is not None

    def version(text: str) -> str:
        try:
            return str(json.loads(text).get("version", "?"))
        except (ValueError, AttributeError):
            return "?"

    was, now = version(on_file), version(value)
    why = (f"its exhibits were prepared by features {was!r} and this ibin prepares {now!r}" if was != now
           else "its exhibits were prepared with other parameters")
    raise DatabaseError(f"{db.path}: cannot {what}: {why}, and exhibits prepared differently are never compared; "
                        "build a new database from the scans (ibin ingest NEW_DB FILES...)")


def prepare(scan, kind: str = "cartridge", *, pixel_um: float | None = None):
    """Prepare a scan for comparison (the ``features`` stage).

    For ``kind="bullet"``, ``scan`` is the list of a bullet's land scans
    (paths or :class:`Scan`, ``None`` or ``"-"`` for a missing land) and a
    :class:`ibin.features.PreparedBullet` is returned.
    """
    _check_kind(kind)
    if kind == "bullet":
        return _prepare_bullet(_bullet_lands(scan), pixel_um)
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
    from .index import default_user

    return default_user(user)


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
        ``"cartridge"`` (one exhibit per source) or ``"bullet"``: then each
        source is the list of one bullet's land files in land order (``None``
        or ``"-"`` for a land not scanned), and a flat list of files is one
        bullet.
    ids : sequence of str, optional
        Exhibit ids, one per source (per bullet); default: the file stem
        (for a bullet, the part of its land files' stems they share).
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
    from .index import Database, check_text, validate_metadata

    _check_kind(kind)
    if kind == "bullet":
        sources = _bullet_batch(sources)
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

    def writable():
        """The database, opened (or created) when the first exhibit is ready to go in."""
        nonlocal handle
        if handle is None:
            try:
                handle = Database.open(path, create=True)
            except DatabaseError as e:
                raise _Abort(e) from None
        if on_wait is not None:
            handle.on_wait = on_wait
        return handle

    if kind == "bullet":
        try:
            return _ingest_bullets(lambda: handle, writable, sources, ids=ids, metadata=md, pixel_um=pixel_um,
                                   user=who, progress=progress)
        except _Abort as a:
            raise a.error from None
        finally:
            if owned and handle is not None:
                handle.close()
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
                    if handle is not None:  # refused before the preparation's cost, not after
                        _check_prepared_alike(handle, _cartridge_settings_key(scan.modality), _cartridge_params_json(),
                                              f"add {ex_id!r}")
                    prep = prepare(scan, kind)
                    got, added = add_prepared(
                        writable(), prep, id=ex_id, kind=kind,
                        source_name=Path(scan.source).name if scan.source else ex_id, sha256=sha,
                        metadata=md, user=who, source_info=dict(scan.info),
                        source_pixel_um=(scan.pixel_x_um, scan.pixel_y_um),
                    )
                    res = IngestResult(str(name), got, "added" if added else "duplicate",
                                       "" if added else f"already on file as {got}")
            except (IbinError, ValueError) as e:
                res = IngestResult(str(name), None, "failed", str(e))
            report.results.append(res)
            if progress is not None:
                progress(i + 1, total, res)
        if handle is not None and report.added:
            fit_indexes(handle, kind)
    except _Abort as a:  # the database cannot be opened: a problem of the batch, not of one file
        raise a.error from None
    finally:
        if owned and handle is not None:
            handle.close()
    return report


def fit_indexes(db, kind: str = "cartridge") -> dict[str, str]:
    """Give each spectral index the kind that fits its size (:func:`spectral_index_factory`).

    Run after an ingest: an index that has outgrown exact search is trained
    and saved in place (atomically); searches in other processes go on with
    the index they loaded. Returns the index kind of each space.
    """
    out = {}
    for space in db.spaces():
        if not space.startswith(f"{kind}/"):
            continue
        want = spectral_index_factory(db.space_size(space))
        idx = db.index(space)
        if idx is not None and idx.factory != want:
            log.info("%s: %d descriptors, rebuilding its index as %s", space, idx.ntotal, want)
            idx = db.index(space, factory=want)
        out[space] = idx.factory if idx is not None else want
    return out


class _Abort(Exception):
    """Carries an error that stops a whole batch through the per-file handler."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


#: Vector part number of each anchor of the polar signatures (only like anchors are
#: compared). Vector ids are unique across spaces, so these stay clear of other parts.
ANCHOR_PARTS = {"firing_pin": 16, "primer": 17, "centroid": 18}


def _polar_space(kind: str, modality: str) -> str:
    return f"{kind}-polar/{modality}"


def _polar_vectors(kind: str, prep) -> tuple[dict, dict]:
    from .features._polar import to_vector

    if prep.polar is None:
        return {}, {}
    space = _polar_space(kind, prep.modality)
    return {space: to_vector(prep.polar)}, {space: tuple(ANCHOR_PARTS[a] for a in prep.anchors)}


def add_prepared(db, prep, *, id: str, kind: str, source_name: str, sha256: str,
                 metadata: Mapping[str, str] | None = None, user: str | None = None,
                 source_info: Mapping[str, str] | None = None, source_pixel_um=None,
                 fsync: bool = True) -> tuple[str, bool]:
    """Put an already prepared exhibit on file (the write half of :func:`ingest`).

    Returns ``(id, added)`` as :meth:`ibin.index.Database.add`. ``fsync=False``
    skips syncing the feature record (bulk loads that can be redone).
    """
    from .index import NewExhibit

    key, value = _cartridge_settings_key(prep.modality), _cartridge_params_json()
    if not _check_prepared_alike(db, key, value, f"add {id!r}"):
        db.ensure_setting(key, value)  # the first of its kind (or refused, should another writer have set it)
    arrays, attrs = prep.to_arrays()
    attrs = dict(attrs, source_info=dict(source_info or {}),
                 source_pixel_um=list(source_pixel_um) if source_pixel_um is not None else None)
    vectors, parts = _polar_vectors(kind, prep)
    new = NewExhibit(
        id=id, kind=kind, modality=prep.modality, source_name=source_name, source_sha256=sha256,
        arrays=arrays, attrs=attrs, vectors={f"{kind}/{prep.modality}": prep.descriptor[None], **vectors},
        vector_parts=parts, metadata=dict(metadata or {}), user=_user(user),
    )
    return db.add(new, durable=fsync)


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


class _Cache:
    """Least-recently-used store of prepared exhibits and of pair comparisons, bounded in size."""

    def __init__(self, max_items: int = 2000, max_pairs: int = 200_000):
        import threading
        from collections import OrderedDict

        self.items: "OrderedDict[int, _Prepared]" = OrderedDict()
        self.pairs: "OrderedDict[tuple[int, int], object]" = OrderedDict()
        self.max_items, self.max_pairs = max_items, max_pairs
        self._lock = threading.Lock()

    def prepared(self, db, rec) -> _Prepared:
        got = self.get(rec.rowid)
        return got if got is not None else self.put(rec.rowid, _Prepared(_load_prepared(db, rec)))

    def prep(self, db, rec):
        """The exhibit's prepared form alone: the cached one, or read from the store (no pyramid built, nothing cached)."""
        got = self.get(rec.rowid)
        return got.prep if got is not None else _load_prepared(db, rec)

    def get(self, rowid: int) -> _Prepared | None:
        with self._lock:
            got = self.items.get(rowid)
            if got is not None:
                self.items.move_to_end(rowid)
            return got

    def put(self, rowid: int, item: _Prepared) -> _Prepared:
        with self._lock:
            self.items[rowid] = item
            if len(self.items) > self.max_items:
                self.items.popitem(last=False)
        return item

    def prepare_all(self, db, records, workers: int) -> dict[int, _Prepared]:
        """Every record prepared: read serially (one database handle), pyramids built in ``workers`` threads."""
        got = {rec.rowid: self.get(rec.rowid) for rec in records}
        todo = [(rec.rowid, _load_prepared(db, rec)) for rec in records if got[rec.rowid] is None]
        for rowid, item in zip([r for r, _ in todo], map_threads(lambda t: _Prepared(t[1]), todo, workers)):
            got[rowid] = self.put(rowid, item)
        return got

    def pair(self, a: int, b: int):
        with self._lock:
            return self.pairs.get((min(a, b), max(a, b)))

    def put_pair(self, a: int, b: int, r) -> None:
        with self._lock:
            self.pairs[(min(a, b), max(a, b))] = r
            if len(self.pairs) > self.max_pairs:
                self.pairs.popitem(last=False)


def _load_prepared(db, rec):
    from .features import PreparedCartridge

    arrays, attrs = db.load(rec)
    return PreparedCartridge.from_arrays(arrays, attrs)


@dataclass
class _Parallel:
    """Where a lead list runs its screen and full comparisons.

    ``pool`` (worker processes, see :mod:`ibin._workers`) when the search
    has one, else ``workers`` threads; ``token`` names the query in the
    workers for the whole lead list.
    """

    workers: int = 1
    pool: object | None = None
    token: str = ""

    def map(self, fn: Callable, make_task: Callable, items: Sequence, tasks: int | None = None) -> list | None:
        """``fn`` over ``items`` dealt into ``tasks`` pool tasks (``make_task(part)``); None without a working pool."""
        from concurrent.futures import CancelledError
        from concurrent.futures.process import BrokenProcessPool

        if self.pool is None or not items:
            return None
        parts = self.pool.split(items, tasks)
        try:
            return self.pool.join(self.pool.map(fn, [make_task(p) for p in parts]))
        except BrokenProcessPool as e:  # a worker died
            _workers.drop(self.pool, e)
        except (CancelledError, _workers.PoolClosed):  # a search of another database replaced the pool meanwhile
            pass
        self.pool = None
        return None


def _query_screen(query: _Prepared, shape: tuple[int, int]):
    """The query side of the screen, for candidates up to ``shape`` (coarsest grid)."""
    from .correlate import QueryScreen

    return QueryScreen(query.pyramid.levels[4], 4 * query.prep.pixel_um, query.prep.spectrum, shape)


def _screen_items(qs, items: Sequence[tuple[Mapping[str, np.ndarray], object]]) -> list[float]:
    """Screen scores of candidates from their stored arrays: ``[(arrays, hints)]``."""
    from .features import dequantize

    return [sc for sc, _ in qs.score_many([(dequantize(a["coarse_q"]), np.asarray(a["spectrum"]), h) for a, h in items])]


def _screen(query: _Prepared, records, db, keep: int, *, kind: str = "cartridge", par: _Parallel | None = None,
            more_hints: Mapping[int, float] | None = None, floor: float | None = None) -> tuple[list, float | None]:
    """The ``keep`` records with the best coarse areal correlation, and the score of the last one kept.

    Each candidate is tried at the rotation its polar signatures give
    against the query's (when both have a like anchor), at the rotation
    ``more_hints`` gives for it (degrees, candidate onto query), and at its
    strongest spectral hypothesis (:class:`ibin.correlate.QueryScreen`).
    Records scoring below ``floor`` are not kept. Without a floor, all are
    kept unscreened when there are no more than ``keep`` (the score is then
    None).
    """
    # all read next (headers here, arrays in the workers, the kept ones in full): asked of the disk at once
    db.prefetch(records)
    if not records or (len(records) <= keep and floor is None):
        return list(records), None
    par = par or _Parallel()
    hints: dict[int, list[float]] = {r: [h] for r, h in
                                     _polar_rotations(db, query.prep, kind, [rec.rowid for rec in records]).items()}
    for r, h in (more_hints or {}).items():
        hints.setdefault(r, []).append(h)
    # only the record headers are read here; the workers read the arrays
    shape = tuple(int(v) for v in np.max([db.array_shapes(rec)["coarse_q"] for rec in records], axis=0))
    items = [(rec, hints.get(rec.rowid)) for rec in records]
    scores = par.map(_workers.screen_task, lambda part: (par.token, query.prep, shape, part), items)
    if scores is None:
        qs = _query_screen(query, shape)
        # views of the memory-mapped store, dealt to the threads as the pool deals records to its workers
        parts = _workers.deal([(db.load(rec)[0], h) for rec, h in items], par.workers)
        scores = _workers.Pool.join(map_threads(lambda part: _screen_items(qs, part), parts, par.workers))
    ranked = [t for t in sorted(zip(scores, records), key=lambda t: (-t[0], t[1].id))[:keep]
              if floor is None or t[0] >= floor]
    return [rec for _, rec in ranked], (float(ranked[-1][0]) if ranked else None)


def _compare_one(query: _Prepared, cand: _Prepared):
    """Full comparison of the query with one prepared candidate, or ``"failed: ..."``."""
    from .correlate import compare_prepared

    try:
        return compare_prepared(query.prep, cand.prep, pyramids=(query.pyramid, cand.pyramid))
    except (IbinError, ValueError) as e:
        return f"failed: {e}"


def _rerank(query: _Prepared, records, db, cache: _Cache, *, query_rowid: int | None = None,
            par: _Parallel | None = None) -> list[tuple[float, object, object]]:
    """Full comparison of the query with each record; best first.

    ``cache`` keeps prepared exhibits and, for exhibits on file, pair
    comparisons: a batch compares each pair once (the comparison is
    symmetric; the reverse view is derived).
    """
    par = par or _Parallel()
    out, todo = [], []
    for rec in records:
        hit = cache.pair(query_rowid, rec.rowid) if query_rowid is not None else None
        if hit is None:
            todo.append(rec)
        elif query_rowid < rec.rowid:  # the stored view has the lower rowid as A
            out.append((rec, hit))
        else:  # swapping needs A's scan centre
            out.append((rec, hit.swapped(cache.prep(db, rec).scan_centre_um)))
    done = par.map(_workers.compare_task, lambda part: (par.token, query.prep, part), todo, tasks=len(todo))
    if done is None:
        prepared = cache.prepare_all(db, todo, par.workers)
        done = map_threads(lambda rec: _compare_one(query, prepared[rec.rowid]), todo, par.workers)
    for rec, r in zip(todo, done):
        if query_rowid is not None and not isinstance(r, str):
            cache.put_pair(query_rowid, rec.rowid, r if query_rowid < rec.rowid else r.swapped(query.prep.scan_centre_um))
        out.append((rec, r))
    ranked = [(-math.inf if isinstance(r, str) else r.score, rec, r) for rec, r in out]
    ranked.sort(key=lambda t: (-t[0], t[1].id))
    return ranked


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
    """Candidate records, best first (deleted exhibits and the query itself dropped).

    Two signatures propose candidates: the anchored polar signatures,
    compared at every rotation (:func:`ibin.features.rotation_max`), and the
    rotation- and translation-invariant spectral descriptor, which needs no
    anchor. The union goes to the screen.
    """
    return _candidates_many(db, [prep], kind, params, [exclude_rowid])[0]


def _candidates_many(db, preps: Sequence, kind: str, params: SearchParams,
                     exclude_rowids: Sequence[int | None]) -> list[list]:
    """:func:`_candidates` of several queries (``exclude_rowids[i]`` left out of query ``i``'s).

    The polar searches share the ``params.workers`` threads
    (:func:`_polar_candidates_many`), the spectral descriptors are searched in
    one call and the catalog is read once.
    """
    k = max(params.candidates, params.n_verify)
    k_spec = max(1, k // 4)
    by_modality: dict[str, list[int]] = {}
    for i, prep in enumerate(preps):
        by_modality.setdefault(prep.modality, []).append(i)
    out_ids: list = [None] * len(preps)
    for modality, which in by_modality.items():
        allowed = db.rowids(kind=kind, modality=modality, filters=params.filters) if params.filters else None
        polar = _polar_candidates_many(db, [preps[i] for i in which], kind, k + 1, allowed, workers=params.workers)
        _, spectral, _ = db.search_vectors(f"{kind}/{modality}", np.stack([preps[i].descriptor for i in which]),
                                           k_spec + 1, allowed_rowids=allowed)
        for i, best, row in zip(which, polar, spectral):
            ex = exclude_rowids[i]
            scores = {rowid: s for rowid, s in best if rowid != ex}
            polar_order = sorted(scores, key=lambda r: -scores[r])[:k]
            spec = [int(r) for r in row[: k_spec + (ex is not None)] if r >= 0 and r != ex]
            out_ids[i] = polar_order + [r for r in spec if r not in scores]
    recs = db.get_rowids(sorted({r for ids in out_ids for r in ids}))
    return [[recs[r] for r in ids if r in recs] for ids in out_ids]


#: Below this many exhibits the spectral descriptors are searched exactly.
EXACT_INDEX_LIMIT = 100_000


def spectral_index_factory(n: int) -> str:
    """FAISS index for ``n`` spectral descriptors: exact below :data:`EXACT_INDEX_LIMIT`, IVF with 8-bit scalar quantisation above.

    ``4 sqrt(n)`` inverted lists (rounded to a power of two), the usual
    FAISS guideline; see ``benchmarks/results/scale.json`` for recall and
    latency against exact search.
    """
    if n < EXACT_INDEX_LIMIT:
        return "Flat"
    nlist = 1 << int(round(math.log2(4 * math.sqrt(n))))
    return f"IVF{nlist},SQ8"


def search_plan(db) -> dict[str, str]:
    """How the candidate stage searches each descriptor space of a database, in words (for ``ibin info``)."""
    from .features._polar import COARSE_HARMONICS, EXACT_SIGNATURES

    plan = {}
    for space in db.spaces():
        if "-polar/" in space:
            rowids, parts, _ = db.space_matrix(space)
            sizes = np.bincount(np.asarray(parts, dtype=np.int64)) if len(parts) else np.zeros(1, int)
            largest = int(sizes.max())
            if largest <= EXACT_SIGNATURES:
                plan[space] = f"every rotation, exact (up to {EXACT_SIGNATURES:,} signatures per anchor; largest {largest:,})"
            else:
                plan[space] = (f"every rotation, two passes: {COARSE_HARMONICS} harmonics in 8 bits at {4 * COARSE_HARMONICS} "
                               f"rotations, then exact for the best (largest anchor {largest:,} signatures)")
        else:
            idx = db.index(space)
            if idx is None:
                continue
            plan[space] = f"FAISS {idx.factory}" + (f", nprobe {idx.nprobe}" if idx.nprobe else ", exact")
    return plan


def _polar_by_anchor(db, space: str, workers: int = 1):
    """The polar signatures of a space, grouped by anchor, kept with the database handle.

    Returns ``(rowids, vectors, by_anchor)``; ``by_anchor[part]`` is
    ``(positions, coarse, sorted_rowids, order)``: the anchor's rows in
    ``vectors``, their first harmonics in 8 bits (the
    :class:`~ibin.features._polar.CoarseSignatures` the first pass of
    :func:`~ibin.features.rotation_max_top` reads), and their exhibit rowids
    sorted (``rowids[positions[order]]``) for lookups. Derived once per
    handle and space (:class:`ibin._polar_rows.PolarRows`, in ``workers``
    threads); exhibits added since are derived alone, so a search after an
    ingest does not derive a million rows again.
    """
    from ._polar_rows import PolarRows

    rowids, parts, x = db.space_matrix(space)
    key = ("polar-rows", space)
    rows = db.derived.get(key)  # a handle serves one thread at a time (Database)
    if rows is None or not rows.update(rowids, parts, x, workers):
        rows = db.derived[key] = PolarRows(rowids, parts, x, workers=workers)
    return rowids, x, rows.by_anchor()


def _polar_candidates_many(db, preps: Sequence, kind: str, k: int, allowed: np.ndarray | None,
                           workers: int = 1) -> list[list[tuple[int, float]]]:
    """For each query (of one modality), the exhibits whose polar signatures correlate best with its own at any rotation.

    ``(rowid, score)`` pairs, best first; the queries share ``workers`` threads.
    With at least as many queries as threads, each query is searched in
    one thread: the first pass is compute-bound, and splitting each pass
    over the threads in turn costs more CPU than running whole passes side
    by side (the blocks' Python calls contend for the interpreter). For
    query expansion's two leads at 1M signatures, 319 against 358 ms p50
    (``benchmarks/results/expansion.json``). The database is read in the
    calling thread only.
    """
    from .features._polar import rotation_max_top

    preps = list(preps)
    live = [p for p in preps if p.polar is not None]
    if not live:
        return [[] for _ in preps]
    rowids, x, by_anchor = _polar_by_anchor(db, _polar_space(kind, live[0].modality), workers)
    if len(rowids) == 0:
        return [[] for _ in preps]
    entries = {}  # anchor part -> (rows, coarse), the filter applied once
    for part in {ANCHOR_PARTS[a] for p in live for a in p.anchors} & by_anchor.keys():
        sel, coarse = by_anchor[part][:2]
        if allowed is not None:
            keep = np.flatnonzero(np.isin(rowids[sel], allowed))
            sel, coarse = sel[keep], coarse[keep]
        if len(sel):
            entries[part] = (sel, coarse)
    inner = 1 if len(preps) >= workers else workers

    def one(prep) -> list[tuple[int, float]]:
        best: dict[int, float] = {}
        if prep.polar is None:
            return []
        for anchor, C in zip(prep.anchors, prep.polar):
            entry = entries.get(ANCHOR_PARTS[anchor])
            if entry is None:
                continue
            sel, coarse = entry
            idx, score = rotation_max_top(C, x, min(k, len(sel)), coarse=coarse, rows=sel, workers=inner)
            for r, s in zip(rowids[sel[idx]], score):
                r = int(r)
                if s > best.get(r, -np.inf):
                    best[r] = float(s)
        return sorted(best.items(), key=lambda t: -t[1])[:k]

    return map_threads(one, preps, workers) if inner == 1 else [one(p) for p in preps]


def _polar_rotations(db, prep, kind: str, rowids_wanted: Sequence[int]) -> dict[int, float]:
    """Rotation (degrees, candidate onto query) of each exhibit's best-matching polar signature.

    Only like anchors are compared; exhibits without one are left out.
    """
    from .features._polar import rotation_max

    if prep.polar is None or not len(rowids_wanted):
        return {}
    rowids, x, by_anchor = _polar_by_anchor(db, _polar_space(kind, prep.modality))
    if len(rowids) == 0:
        return {}
    want = np.asarray(rowids_wanted, dtype=np.int64)
    best: dict[int, tuple[float, float]] = {}
    for anchor, C in zip(prep.anchors, prep.polar):
        entry = by_anchor.get(ANCHOR_PARTS[anchor])
        if entry is None:
            continue
        sel, _, sorted_ids, order = entry
        j = np.minimum(np.searchsorted(sorted_ids, want), len(sorted_ids) - 1)
        hit = sorted_ids[j] == want
        if not hit.any():
            continue
        rows = sel[order[j[hit]]]
        score, rot = rotation_max(C, x, rows=rows)
        for r, sc, ro in zip(want[hit], score, rot):
            if sc > best.get(int(r), (-np.inf, 0.0))[0]:
                best[int(r)] = (float(sc), float(ro))
    return {r: ro for r, (_, ro) in best.items()}


def _lead_list(db, kind, query_id, query_file, q: _Prepared, params: SearchParams, cache: _Cache,
               *, query_rowid: int | None = None, t0: float, total: int | None = None,
               exclude_rowid: int | None = None, user: str | None = None,
               audit_query: dict | None = None, details: dict | None = None,
               query_exhibit: str | None = None) -> LeadList:
    # one snapshot of the catalog for the whole list: ingests and deletions by
    # other processes meanwhile never make it inconsistent
    with db.snapshot():
        t1 = time.perf_counter()
        on_file = db.count(kind=kind) if total is None else total
        # worker processes (started now, if new, while the index is searched) or threads
        par = _Parallel(params.workers, _workers.pool_for(db, params.workers, on_file, start=not params.one_off),
                        _workers.new_token())
        cands = _candidates(db, q.prep, kind, params,
                            exclude_rowid=query_rowid if query_rowid is not None else exclude_rowid)
        t2 = time.perf_counter()
        verified, cut = _screen(q, cands, db, params.n_verify, kind=kind, par=par)
        t3 = time.perf_counter()
        ranked = _rerank(q, verified, db, cache, query_rowid=query_rowid, par=par)
        t4 = time.perf_counter()
        ranked = _expand(db, kind, q, params, cache, ranked, cands, query_rowid=query_rowid,
                         exclude=(query_rowid, exclude_rowid), par=par, screen_floor=cut)
        t5 = time.perf_counter()
    leads = tuple(_lead(i + 1, rec, r) for i, (_, rec, r) in enumerate(ranked[: params.top]))
    # the examiners' verdicts on these pairs, when the query is an exhibit on file
    leads = _with_dispositions(db, query_exhibit, leads)
    if details is not None:
        details[query_id] = _details(q.prep, ranked[: params.top])
    ll = LeadList(
        query_id=query_id, query_file=query_file, kind=kind, leads=leads,
        database_path=str(db.path), database_exhibits=on_file,
        timing_ms={"prepare": (t1 - t0) * 1e3, "candidates": (t2 - t1) * 1e3, "screen": (t3 - t2) * 1e3,
                   "rerank": (t4 - t3) * 1e3, "expand": (t5 - t4) * 1e3, "total": (t5 - t0) * 1e3},
    )
    if audit_query is not None:
        _audit_search(db, ll, params, user, audit_query)
    return ll


#: Congruent matching cells from which a lead counts as an identification
#: (the numerical criterion C = 6 of Song, J. (2013), "Proposed NIST
#: ballistics identification system (NBIS) based on 3D topography
#: measurements on correlation cells", AFTE Journal 45(2), 184-194).
IDENTIFICATION_CMC = 6
#: Identified leads whose own candidates join the search (query expansion).
EXPAND_LEADS = 2


def _expand(db, kind: str, q: _Prepared, params: SearchParams, cache: _Cache, ranked: list, cands: list,
            *, query_rowid: int | None, exclude: tuple, par: _Parallel | None = None,
            screen_floor: float | None = None) -> list:
    """Query expansion: the candidates of identified leads join the screen and the full comparison.

    A lead with at least :data:`IDENTIFICATION_CMC` congruent cells came
    from the query's firearm by the field's criterion, so the exhibits that
    resemble it are likely mates of the query too, even when the query's own
    signatures missed them (a worn or partly marked cartridge case). This
    is the "total recall" query expansion of image retrieval (Chum et al.,
    ICCV 2007), made safe by the full comparison that every added exhibit
    still goes through. At most :data:`EXPAND_LEADS` leads are expanded,
    each with a quarter of the candidate budget (their searches side by
    side, :func:`_candidates_many`); the added exhibits are screened
    against the query (also at their rotation onto the lead, composed with
    the lead's registered rotation onto the query), and at most
    ``verify // 2`` of them are compared in full: those whose screen score
    reaches ``screen_floor``, the score of the last candidate the query's
    own screen sent to the full comparison. An added exhibit is thus
    compared in full when the screen would have sent it there had the
    query's candidate stage found it; what expansion recovers is what the
    candidate stage missed, not what the screen rejects.
    """
    from dataclasses import replace

    strong = [(rec, r) for _, rec, r in ranked[:EXPAND_LEADS]
              if not isinstance(r, str) and getattr(r, "cmc", 0) >= IDENTIFICATION_CMC]
    if not strong:
        return ranked
    seen = {rec.rowid for rec in cands} | {r for r in exclude if r is not None}
    sub = replace(params, candidates=max(1, params.candidates // 4), verify=1, top=1)
    leads = [cache.prep(db, rec) for rec, _ in strong]  # their signatures suffice
    found = _candidates_many(db, leads, kind, sub, [rec.rowid for rec, _ in strong])
    extra, hints = [], {}
    for (rec, r), lead, cand in zip(strong, leads, found):
        new = [c for c in cand if c.rowid not in seen]
        # rotation onto the query through the lead: candidate -> lead (polar) then lead -> query (registered)
        for c_rowid, rot in _polar_rotations(db, lead, kind, [c.rowid for c in new]).items():
            hints[c_rowid] = rot + r.rotation_deg
        seen.update(c.rowid for c in new)
        extra += new
    if not extra:
        return ranked
    screened, _ = _screen(q, extra, db, max(1, params.n_verify // 2), kind=kind, par=par, more_hints=hints,
                          floor=screen_floor)
    if not screened:
        return ranked
    more = _rerank(q, screened, db, cache, query_rowid=query_rowid, par=par)
    return sorted(ranked + more, key=lambda t: (-t[0], t[1].id))


def _audit_search(db, ll: LeadList, p: SearchParams, user: str | None, query: dict) -> None:
    """Record a search in the audit log (read-only handles cannot write, and do not)."""
    if db.readonly:
        return
    db.audit(
        "search", user=_user(user), kind=ll.kind, query=query, top=p.top, candidates=p.candidates,
        verify=p.n_verify, filters=dict(p.filters), exhibits_on_file=ll.database_exhibits,
        leads=[{"id": l.id, "score": round(float(l.score), 6) if math.isfinite(l.score) else None}
               for l in ll.leads],
    )


def search(
    db,
    query: Scan | str | os.PathLike,
    *,
    kind: str = "cartridge",
    params: SearchParams | None = None,
    pixel_um: float | None = None,
    query_id: str | None = None,
    user: str | None = None,
    details: dict | None = None,
) -> LeadList:
    """Lead list of a new scan against the database (the scan is not added).

    If the same file (same SHA-256) is already on file, that exhibit is not
    listed as a lead of itself. The candidates and the comparisons read one
    snapshot of the database, so ingests and deletions by other processes
    meanwhile never make the list inconsistent. On a read-write database
    the search is recorded in the audit log (query file and SHA-256,
    parameters, leads returned, user).

    Parameters
    ----------
    db : Database
    query : path or Scan
        For ``kind="bullet"``: the bullet's land files in land order (a
        single land file is a fragment: the lead list then holds the bullets
        whose lands match it best).
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
    if kind == "bullet":
        return _search_bullet(db, query, params=params, pixel_um=pixel_um, query_id=query_id, user=user,
                              details=details)
    p = params or SearchParams()
    t0 = time.perf_counter()
    scan = _as_scan(query, pixel_um)
    prep = prepare(scan, kind)
    _check_prepared_alike(db, _cartridge_settings_key(prep.modality), _cartridge_params_json(), "search it")
    # a scan already on file is not its own lead
    same = db.find_source(scan.sha256, kind) if scan.sha256 else None
    exclude = db.get(same).rowid if same is not None else None
    return _lead_list(db, kind, query_id or scan.name, scan.source, _Prepared(prep), p, _Cache(), t0=t0,
                      exclude_rowid=exclude, user=user, details=details, query_exhibit=same,
                      audit_query={"id": query_id or scan.name, "file": scan.source, "sha256": scan.sha256})


def search_exhibits(
    db,
    ids: Iterable[str] | None = None,
    *,
    kind: str = "cartridge",
    params: SearchParams | None = None,
    user: str | None = None,
    processes: int = 1,
    details: dict | None = None,
) -> Iterator[LeadList]:
    """Lead lists of exhibits already on file, each against all the others.

    Each lead list reads one snapshot of the database and, on a read-write
    database, is recorded in the audit log.

    Parameters
    ----------
    db : Database
    ids : iterable of str, optional
        Exhibits to use as queries; all of ``kind`` when None.
    kind : str
    params : SearchParams, optional
    user : str, optional
        Who searches, for the audit log.
    processes : int
        Worker processes (a cold-case sweep over a large database uses every
        core). Each worker opens the database read-only and works through
        its share of the queries; lead lists come back in query order. With
        one process, each pair of exhibits is compared once for both lists.
    details : dict, optional
        As for :func:`search`, filled for every query (keep it only for a
        few queries: it holds their prepared arrays).

    Yields
    ------
    LeadList
        One per query, never listing the query as its own lead.
    """
    _check_kind(kind)
    if kind == "bullet":
        yield from _search_bullet_exhibits(db, ids, params=params, user=user, details=details)
        return
    p = params or SearchParams()
    recs = db.list(kind=kind) if ids is None else [db.get(i) for i in ids]
    for rec in recs:
        if rec.kind != kind:
            raise ScanError(None, f"exhibit {rec.id!r} is a {rec.kind}, not a {kind}")
    total = db.count(kind=kind)
    if processes > 1 and len(recs) > 1 and details is None:
        from multiprocessing import get_context

        chunks = [[r.id for r in recs[i : i + 16]] for i in range(0, len(recs), 16)]
        single = SearchParams(top=p.top, candidates=p.candidates, verify=p.verify, filters=p.filters, workers=1)
        with get_context("spawn").Pool(processes, initializer=_sweep_init, initargs=(str(db.path),)) as pool:
            for lists in pool.imap(_sweep_chunk, [(c, kind, single, total) for c in chunks]):
                for ll in lists:
                    _audit_search(db, ll, p, user, {"exhibit": ll.query_id})
                    yield ll
        return
    cache = _Cache()
    for rec in recs:
        t0 = time.perf_counter()
        q = cache.prepared(db, rec)
        yield _lead_list(db, kind, rec.id, rec.source_name, q, p, cache, query_rowid=rec.rowid, t0=t0, total=total,
                         user=user, audit_query={"exhibit": rec.id}, details=details, query_exhibit=rec.id)


_SWEEP: dict = {}


def _sweep_init(path: str) -> None:
    """Worker of a parallel sweep: one read-only database handle (:func:`ibin._workers.worker_database`) and one cache for its lifetime."""
    _SWEEP["db"] = _workers.worker_database(path)
    _SWEEP["cache"] = _Cache(max_items=500)


def _sweep_chunk(task) -> list[LeadList]:
    ids, kind, p, total = task
    db, cache = _SWEEP["db"], _SWEEP["cache"]
    out = []
    for ex_id in ids:
        t0 = time.perf_counter()
        rec = db.get(ex_id)
        q = cache.prepared(db, rec)
        out.append(_lead_list(db, kind, rec.id, rec.source_name, q, p, cache, query_rowid=rec.rowid, t0=t0,
                              total=total, query_exhibit=rec.id))
    return out


# ---------------------------------------------------------------- compare


def compare(a: Scan | str | os.PathLike, b: Scan | str | os.PathLike, *, kind: str = "cartridge",
            pixel_um: float | None = None):
    """Compare two scans directly (no database).

    For ``kind="bullet"``, ``a`` and ``b`` are lists of land files in land
    order (see :func:`ingest`).

    Returns
    -------
    ibin.correlate.AreaComparison or ibin.correlate.BulletComparison
        Cartridge cases: score, CMC count, CCF and the alignment that brings
        ``b`` onto ``a``. Bullets: the bullet score, the phase and the land
        matrix.
    """
    from .correlate import compare_prepared

    _check_kind(kind)
    if kind == "bullet":
        return _compare_bullets(a, b, pixel_um)
    pa = prepare(_as_scan(a, pixel_um), kind)
    pb = prepare(_as_scan(b, pixel_um), kind)
    return compare_prepared(pa, pb)


# ================================================================ bullets
#
# A bullet is one exhibit (kind "bullet", modality "height") holding the
# signatures of its lands in land order; a land that was not scanned keeps
# its position. Two descriptor spaces serve the index: "bullet/land" (one
# vector per scanned land, part = its land position) for
# fragment searches, and "bullet/bullet" (one order-invariant vector per
# bullet) so that a search by bullet is one query. The re-rank compares
# every land pair and finds the phase (ibin.correlate.compare_bullets).

#: Stands for a land that was not scanned in a bullet's list of land files.
MISSING_LAND = "-"

_BULLET_SPACE_LAND = "bullet/land"
_BULLET_SPACE_BULLET = "bullet/bullet"
_BULLET_PART = 255  # vector part of the bullet-level vector; land vectors use their land position (< 255)


def _bullet_settings_key() -> str:
    return "features/bullet/height"


def _bullet_params_json() -> str:
    from .correlate import ProfileParams
    from .features import BULLET_FEATURES_VERSION, BulletParams

    return json.dumps({"version": BULLET_FEATURES_VERSION, "params": BulletParams().to_dict(),
                       "coarse_factor": ProfileParams().coarse_factor}, sort_keys=True)


def _is_missing(x) -> bool:
    return x is None or (isinstance(x, str) and x.strip() == MISSING_LAND)


def _is_land_source(x) -> bool:
    return _is_missing(x) or isinstance(x, (Scan, str, os.PathLike))


def _bullet_lands(x) -> list:
    """One bullet's lands as a list (a single file or Scan is a one-land fragment)."""
    if _is_land_source(x):
        return [x]
    lands = list(x)
    if not lands:
        raise ValueError("a bullet needs at least one land file")
    for l in lands:
        if not _is_land_source(l):
            raise ValueError(f"a land must be a file path, a Scan, None or {MISSING_LAND!r}; got {type(l).__name__}")
    return lands


def _bullet_batch(sources) -> list[list]:
    """Normalise ``ingest`` sources: a flat list of land files is one bullet, a list of lists many."""
    items = list(sources)
    if not items:
        return []
    if all(_is_land_source(x) for x in items):
        return [items]
    return [_bullet_lands(x) for x in items]


def _land_name(x) -> str:
    if _is_missing(x):
        return MISSING_LAND
    if isinstance(x, Scan):
        return x.source or "<in-memory scan>"
    return os.fspath(x)


def _load_lands(lands: Sequence, pixel_um: float | None) -> list[Scan | None]:
    out = [None if _is_missing(l) else _as_scan(l, pixel_um) for l in lands]
    if all(s is None for s in out):
        raise ScanError(None, "a bullet needs at least one scanned land (all were marked missing)")
    return out


def _prepare_bullet(lands: Sequence, pixel_um: float | None):
    from .features import prepare_bullet

    return prepare_bullet(_load_lands(lands, pixel_um))


def _bullet_default_id(lands: Sequence) -> str:
    """The part the land files' stems share (``Barrel_1-Bullet_1-Land_3`` ... -> ``Barrel_1-Bullet_1``)."""
    import re

    stems = [Path(_land_name(l)).stem for l in lands if not _is_missing(l) and _land_name(l) != "<in-memory scan>"]
    if not stems:
        return ""
    prefix = os.path.commonprefix(stems)
    if len(stems) > 1:
        prefix = re.sub(r"[-_ .]*(land|lea|l)?[-_ .]*$", "", prefix, flags=re.IGNORECASE)
    return prefix.strip("-_ .") or stems[0]


def _ingest_bullets(current, writable, bullets: list[list], *, ids, metadata, pixel_um, user, progress) -> IngestReport:
    """Ingest bullets; ``current()`` is the open database or None, ``writable()`` opens it for the first write."""
    from .features import bullet_sha256
    from .index import NewExhibit

    params_json = _bullet_params_json()
    report = IngestReport()
    total = len(bullets)
    for i, lands in enumerate(bullets):
        name = ", ".join(_land_name(l) for l in lands)
        try:
            scans = _load_lands(lands, pixel_um)
            sha = bullet_sha256([None if s is None else (s.sha256 or _values_sha(s)) for s in scans])
            ex_id = ids[i] if ids is not None else (_bullet_default_id(lands) or f"bullet-{sha[:12]}")
            existing = current().find_source(sha, "bullet") if current() is not None else None
            if existing is not None:
                res = IngestResult(name, existing, "duplicate", f"already on file as {existing}")
            else:
                from .features import prepare_bullet

                if current() is not None:  # refused before the preparation's cost, not after
                    _check_prepared_alike(current(), _bullet_settings_key(), params_json, f"add {ex_id!r}")
                prep = prepare_bullet(scans)
                db = writable()  # a database given by path opens at its first write: checked here then
                if not _check_prepared_alike(db, _bullet_settings_key(), params_json, f"add {ex_id!r}"):
                    db.ensure_setting(_bullet_settings_key(), params_json)
                arrays, attrs = prep.to_arrays()
                attrs = dict(attrs, land_files=[None if s is None else Path(s.source).name if s.source else None
                                                for s in scans],
                             source_pixel_um=[None if s is None else [s.pixel_x_um, s.pixel_y_um] for s in scans])
                new = NewExhibit(
                    id=ex_id, kind="bullet", modality="height",
                    source_name=", ".join(Path(_land_name(l)).name for l in lands),
                    source_sha256=sha, arrays=arrays, attrs=attrs,
                    vectors={_BULLET_SPACE_LAND: prep.land_descriptors, _BULLET_SPACE_BULLET: prep.descriptor[None]},
                    # a land vector's part is its land position; the bullet vector takes the last part
                    vector_parts={_BULLET_SPACE_LAND: tuple(prep.present), _BULLET_SPACE_BULLET: (_BULLET_PART,)},
                    metadata=metadata, user=user,
                )
                got, added = db.add(new)
                res = IngestResult(name, got, "added" if added else "duplicate",
                                   "" if added else f"already on file as {got}")
        except (IbinError, ValueError) as e:
            res = IngestResult(name, None, "failed", str(e))
        report.results.append(res)
        if progress is not None:
            progress(i + 1, total, res)
    return report


class _BulletEntry:
    """A prepared bullet with its profiles packed once for the comparison kernel."""

    __slots__ = ("prep", "profiles")

    def __init__(self, prep):
        from .correlate import ProfileParams, ProfileSet

        self.prep = prep
        self.profiles = ProfileSet([None if l is None else l.signature for l in prep.lands], prep.pixel_um,
                                   coarse_factor=ProfileParams().coarse_factor)


def _load_bullet(db, rec) -> _BulletEntry:
    from .features import PreparedBullet

    arrays, attrs = db.load(rec)
    return _BulletEntry(PreparedBullet.from_arrays(arrays, attrs))


def _bullet_candidates(db, q: _BulletEntry, params: SearchParams, exclude_rowid: int | None = None):
    """Bullets on file worth a full comparison: by bullet descriptor, or by land for a fragment."""
    allowed = None
    if params.filters or exclude_rowid is not None:
        allowed = db.rowids(kind="bullet", filters=params.filters or None)
        if exclude_rowid is not None:
            allowed = allowed[allowed != exclude_rowid]
    k = max(params.candidates, params.top)
    if len(q.prep.present) == 1:
        # a fragment: the bullets holding the most similar lands
        vec = q.prep.land_descriptors
        _, rowids, _ = db.search_vectors(_BULLET_SPACE_LAND, vec, min(8 * k, 1 << 16), allowed_rowids=allowed)
    else:
        _, rowids, _ = db.search_vectors(_BULLET_SPACE_BULLET, q.prep.descriptor[None], k, allowed_rowids=allowed)
    ids: list[int] = []
    for r in rowids[0]:
        r = int(r)
        if r >= 0 and r not in ids:
            ids.append(r)
        if len(ids) >= k:
            break
    recs = db.get_rowids(ids)
    return [recs[i] for i in ids if i in recs and recs[i].kind == "bullet"]


def _bullet_rerank(q: _BulletEntry, records, db, cache: dict | None = None):
    from .correlate import compare_bullets

    db.prefetch([rec for rec in records if cache is None or rec.rowid not in cache])  # read next, one by one
    out = []
    for rec in records:
        try:
            cand = cache.get(rec.rowid) if cache is not None else None
            if cand is None:
                cand = _load_bullet(db, rec)
                if cache is not None:
                    cache[rec.rowid] = cand
            r = compare_bullets(q.profiles, cand.profiles, features=False)
            score = r.score if math.isfinite(r.score) else -math.inf
            out.append((score, rec, r, cand))
        except (IbinError, ValueError) as e:
            out.append((-math.inf, rec, f"failed: {e}", None))
    out.sort(key=lambda t: (-t[0], t[1].id))
    return out


def _bullet_lead(rank: int, rec, r, q: _BulletEntry, cand, comparisons: dict | None = None) -> Lead:
    from .correlate import compare_bullets

    if isinstance(r, str):
        return Lead(rank=rank, id=rec.id, score=float("-inf"), status=r, metadata=dict(rec.metadata))
    if not math.isfinite(r.score):
        return Lead(rank=rank, id=rec.id, score=float("-inf"), status="failed: no land pair overlaps enough to compare",
                    metadata=dict(rec.metadata))
    full = compare_bullets(q.profiles, cand.profiles)  # with striae features for the lands of the phase
    if comparisons is not None:
        comparisons[rec.id] = full
    best = max((l.ccf for l in full.lands), default=float("nan"))
    extra = {
        "phase": full.phase,
        "phase_margin": None if not math.isfinite(full.phase_margin) else round(full.phase_margin, 4),
        "fragment": full.fragment,
        "lands": [l.to_dict() for l in full.lands],
    }
    return Lead(rank=rank, id=rec.id, score=full.score, ccf=best, metadata=dict(rec.metadata), extra=extra)


def _bullet_leadlist(db, q: _BulletEntry, query_id: str, query_file, recs, p: SearchParams, t0: float, t1: float,
                     cache: dict | None = None, details: dict | None = None,
                     query_exhibit: str | None = None) -> LeadList:
    t2 = time.perf_counter()
    ranked = _bullet_rerank(q, recs, db, cache)
    comparisons: dict | None = {} if details is not None else None
    leads = tuple(_bullet_lead(i + 1, rec, r, q, cand, comparisons) for i, (_, rec, r, cand) in enumerate(ranked[: p.top]))
    leads = _with_dispositions(db, query_exhibit, leads)
    if details is not None:
        details[query_id] = {"query": q.prep, "comparisons": comparisons}
    t3 = time.perf_counter()
    return LeadList(
        query_id=query_id, query_file=query_file, kind="bullet", leads=leads,
        database_path=str(db.path), database_exhibits=db.count(kind="bullet"),
        timing_ms={"prepare": (t1 - t0) * 1e3, "candidates": (t2 - t1) * 1e3, "rerank": (t3 - t2) * 1e3,
                   "total": (t3 - t0) * 1e3},
    )


def _search_bullet(db, query, *, params: SearchParams | None, pixel_um: float | None, query_id: str | None,
                   user: str | None = None, details: dict | None = None) -> LeadList:
    p = params or SearchParams()
    t0 = time.perf_counter()
    lands = _bullet_lands(query)
    prep = _prepare_bullet(lands, pixel_um)
    if not _check_prepared_alike(db, _bullet_settings_key(), _bullet_params_json(), "search it") and not db.readonly:
        db.ensure_setting(_bullet_settings_key(), _bullet_params_json())
    q = _BulletEntry(prep)
    names = [_land_name(l) for l in lands]
    qid = query_id or _bullet_default_id(lands) or "bullet"
    with db.snapshot():
        t1 = time.perf_counter()
        recs = _bullet_candidates(db, q, p)
        on_file = None
        if all(isinstance(l, (str, os.PathLike)) or _is_missing(l) for l in lands):
            from .features import bullet_sha256

            scans = _load_lands(lands, pixel_um)
            on_file = db.find_source(bullet_sha256([None if s is None else s.sha256 for s in scans]), "bullet")
        ll = _bullet_leadlist(db, q, qid, ", ".join(names), recs, p, t0, t1, details=details, query_exhibit=on_file)
    _audit_search(db, ll, p, user, {"id": qid, "files": names})
    return ll


def _search_bullet_exhibits(db, ids: Iterable[str] | None, *, params: SearchParams | None,
                            user: str | None = None, details: dict | None = None) -> Iterator[LeadList]:
    p = params or SearchParams()
    recs = db.list(kind="bullet") if ids is None else [db.get(i) for i in ids]
    cache: dict[int, _BulletEntry] = {}
    for rec in recs:
        t0 = time.perf_counter()
        if rec.kind != "bullet":
            raise ScanError(None, f"exhibit {rec.id!r} is a {rec.kind}, not a bullet")
        q = cache.get(rec.rowid)
        if q is None:
            q = _load_bullet(db, rec)
            cache[rec.rowid] = q
        with db.snapshot():
            t1 = time.perf_counter()
            cands = _bullet_candidates(db, q, p, exclude_rowid=rec.rowid)
            ll = _bullet_leadlist(db, q, rec.id, rec.source_name, cands, p, t0, t1, cache, details=details,
                                  query_exhibit=rec.id)
        _audit_search(db, ll, p, user, {"exhibit": rec.id})
        yield ll


def _compare_bullets(a, b, pixel_um: float | None):
    from .correlate import compare_bullets

    pa = _BulletEntry(_prepare_bullet(_bullet_lands(a), pixel_um))
    pb = _BulletEntry(_prepare_bullet(_bullet_lands(b), pixel_um))
    return compare_bullets(pa.profiles, pb.profiles)


# ---------------------------------------------------------------- review


def load_prepared(db, exhibit_id: str):
    """The prepared arrays of an exhibit on file.

    Returns
    -------
    ibin.features.PreparedCartridge or ibin.features.PreparedBullet
    """
    rec = db.get(exhibit_id)
    _check_kind(rec.kind)
    if rec.kind == "bullet":
        return _load_bullet(db, rec).prep
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
