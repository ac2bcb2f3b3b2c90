"""Worker processes that share one lead list's screen and full comparisons.

A lead list spends most of its time in the coarse screen (a few hundred
candidates) and the full comparisons (a few dozen pairs), each a long run of
small NumPy, SciPy and OpenCV calls. Python threads take turns on one
interpreter lock between those calls: on this project's 2-core machine two
threads screened a lead list's candidates 1.1-1.4x more slowly than one
thread, and two processes made whole lead lists in 0.67x (Fadul queries) and
0.84x (synthetic) the time of two threads, with the same leads
(``benchmarks/results/workers_planted_pop_db_100k.json``).
Worker processes have no shared lock, so a search with ``workers`` above one
hands both stages to a pool of processes.

* The pool belongs to one database (its path and catalog id) and is kept
  for the next searches: starting it costs a fraction of a second (imports),
  paid once per process. A search on another database replaces it. A
  process's only lead list (``SearchParams.one_off``, the command line's
  search with one query) starts none: in a fresh process one-off searches
  took 1.27-1.30x as long with the pool as in threads
  (``benchmarks/results/one_off.json``).
* Each worker opens the database read-only and reads the records the search
  sends (the feature store is append-only, so a record once written never
  changes); it keeps the candidates it prepared until the next search, as a
  search in threads does.
* The query's prepared arrays travel with each task; a worker prepares the
  query (pyramid, rotated screen spectra) once per search.
* Workers never write. A pool that breaks (a worker killed) is dropped and
  the search finishes in threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence

log = logging.getLogger(__name__)

__all__ = ["Pool", "PoolClosed", "pool_for", "drop", "shutdown", "new_token", "screen_task", "compare_task",
           "exit_with_parent", "worker_database"]

#: Below this many exhibits on file a search runs in threads: on a small
#: database (a demo, a test, a lab's first exhibits) one search saves less than
#: starting the processes costs (~0.6 s of both cores, once per process).
MIN_EXHIBITS = 1000
#: Screen tasks per worker: enough to balance uneven candidates, few enough
#: that each worker prepares the query's screen once or twice. (A full
#: comparison, tens of milliseconds, is a task of its own.)
TASKS_PER_WORKER = 4


class PoolClosed(Exception):
    """The pool was closed (replaced by another database's) before a search could use it."""


_lock = threading.Lock()
_current: dict = {"key": None, "pool": None}


def deal(items: Sequence, parts: int) -> list[list]:
    """``items`` dealt into ``parts`` lists (at most one per item), every n-th item to a list; :meth:`Pool.join` undoes it."""
    n = max(1, min(len(items), parts))
    return [list(items[i::n]) for i in range(n)]


class Pool:
    """A pool of worker processes reading one database."""

    def __init__(self, path: str, workers: int):
        from multiprocessing import get_context

        self.workers = int(workers)
        self.closed = False
        self._ex = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                       initializer=_init, initargs=(path,))
        # start every worker now (they import while the caller searches the index)
        with _main_hidden():
            for _ in range(self.workers):
                self._ex.submit(_ready)

    def map(self, fn: Callable, tasks: Sequence) -> list:
        """``[fn(t) for t in tasks]`` in the workers, in order.

        Raises ``concurrent.futures.process.BrokenProcessPool`` if a worker
        dies, :class:`PoolClosed` if the pool was closed before the tasks
        were handed out.
        """
        try:
            futures = [self._ex.submit(fn, t) for t in tasks]
        except RuntimeError as e:  # "cannot schedule new futures after shutdown"
            if self.closed:
                raise PoolClosed(str(e)) from None
            raise
        return [f.result() for f in futures]

    def split(self, items: Sequence, tasks: int | None = None) -> list[list]:
        """``items`` dealt into ``tasks`` tasks (default ``TASKS_PER_WORKER`` per worker): :func:`deal`."""
        return deal(items, tasks or TASKS_PER_WORKER * self.workers)

    @staticmethod
    def join(parts: list[list]) -> list:
        """The inverse of :func:`deal`: results back in the order of the items."""
        n = len(parts)
        out: list = [None] * sum(len(p) for p in parts)
        for i, part in enumerate(parts):
            out[i::n] = part
        return out

    def close(self) -> None:
        self.closed = True
        self._ex.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def _main_hidden():
    """Workers started meanwhile do not import the caller's main module.

    A spawned process imports the parent's ``__main__`` (by path or module
    name) before it runs anything; a caller's script without the
    ``if __name__ == "__main__":`` guard would then run again in every
    worker, search included. The workers run only :mod:`ibin` code, so they
    are started without it.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
    for k in saved:
        setattr(main, k, None) if k == "__spec__" else delattr(main, k)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


def pool_for(db, workers: int, exhibits: int, *, start: bool = True) -> Pool | None:
    """The worker pool for searches of ``db``, or None where threads serve better.

    None when ``workers`` is 1, when the search runs over fewer than
    :data:`MIN_EXHIBITS` ``exhibits``, when it has no catalog id to tell it from
    a database later made at the same path, or in a daemonic process (which
    may not start children, e.g. a worker of a caller's own pool). With
    ``start`` False (a process's only lead list), only a pool already up
    for ``db`` is used: none is started.
    """
    import multiprocessing

    if workers < 2 or exhibits < MIN_EXHIBITS or getattr(db, "catalog_id", None) is None:
        return None
    if multiprocessing.current_process().daemon:
        return None
    key = (os.path.realpath(db.path), db.catalog_id, int(workers))
    with _lock:
        if _current["key"] != key or _current["pool"].closed:
            if not start:
                return None
            if _current["pool"] is not None:
                _current["pool"].close()
            _current["key"], _current["pool"] = key, Pool(str(db.path), workers)
        return _current["pool"]


def drop(pool: Pool, error: BaseException) -> None:
    """Forget a broken pool (the next search starts a new one)."""
    log.warning("worker processes failed (%s); finishing the search in threads", error)
    with _lock:
        if _current["pool"] is pool:
            _current["key"], _current["pool"] = None, None
    pool.close()


def shutdown() -> None:
    """Stop the worker processes (they also stop when the process exits)."""
    with _lock:
        if _current["pool"] is not None:
            _current["pool"].close()
        _current["key"], _current["pool"] = None, None


def new_token() -> str:
    """Names one search's query in the workers."""
    return uuid.uuid4().hex


# ---------------------------------------------------------------- worker side

_W: dict = {}
_CACHE_ITEMS = 500  # prepared candidates a worker keeps within one search


def worker_database(path: str):
    """Start of any ibin worker process (a search's or a sweep's): its read-only database handle.

    Ctrl-C is left to the parent, which stops the pool (the workers would
    otherwise each print a traceback as they die); a parent killed outright
    takes the worker with it (:func:`exit_with_parent`); the workers share
    the cores, so each keeps its native libraries to one thread; and each
    keeps the memory its arrays free for the next ones
    (:func:`ibin._alloc.keep_freed_memory`).
    """
    import signal

    from ._alloc import keep_freed_memory
    from ._threads import limit_process
    from .engine import open_database

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    limit_process()
    keep_freed_memory()
    return open_database(path, readonly=True)


def _init(path: str) -> None:
    """A search worker's start: the database, and the comparison code imported (its cost paid now)."""
    from .correlate import compare_prepared, QueryScreen  # noqa: F401

    _W["db"] = worker_database(path)
    _W["queries"] = OrderedDict()  # the prepared candidates ("cache") come with each new query


def exit_with_parent() -> None:
    """End this worker process when the process that started it is gone.

    A pool's workers wait for tasks on a queue whose write end they also
    hold, so a parent killed outright (SIGKILL, a crash) would leave them
    waiting for ever, holding the database open. A watcher thread waits on
    the parent's sentinel and exits.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="ibin-parent-watch", daemon=True).start()


def _ready(_=None) -> int:
    """The worker's process id (a no-op task: the worker is up)."""
    return os.getpid()


def _query(token: str, prep):
    """The search's query, prepared once per worker: ``(_Prepared, {screen shape: QueryScreen})``."""
    from .engine import _Cache, _Prepared

    q = _W["queries"].get(token)
    if q is None:
        q = _W["queries"][token] = (_Prepared(prep), {})
        while len(_W["queries"]) > 2:
            _W["queries"].popitem(last=False)
        # candidates prepared for earlier searches are dropped, as a search in threads starts afresh: a
        # lead list's time does not depend on what was searched before
        _W["cache"] = _Cache(max_items=_CACHE_ITEMS, max_pairs=1)
    return q


def screen_task(task) -> list[float]:
    """Screen scores of some candidates: ``(token, query prep, screen shape, [(record, hints)])``."""
    from .engine import _query_screen, _screen_items

    token, prep, shape, items = task
    q, screens = _query(token, prep)
    qs = screens.get(shape)
    if qs is None:
        qs = screens[shape] = _query_screen(q, shape)
    db = _W["db"]
    return _screen_items(qs, [(db.load(rec)[0], hints) for rec, hints in items])


def compare_task(task) -> list:
    """Full comparisons of the query with some records: ``(token, query prep, [record])``."""
    from .engine import _compare_one

    token, prep, recs = task
    q, _ = _query(token, prep)
    db, cache = _W["db"], _W["cache"]
    return [_compare_one(q, cache.prepared(db, rec)) for rec in recs]
