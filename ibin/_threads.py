"""One thread per native call while ibin's own workers share the cores.

A search splits its work over ``workers`` Python threads (and a sweep over
worker processes). The numerical libraries those threads call keep thread
pools of their own: OpenBLAS (behind NumPy's matrix products) and OpenCV
each start one thread per core by default, so two ibin workers ran four busy
threads on two cores: the candidate stage's first pass over 1M signatures
took 1.46x as long in 2 workers as with BLAS kept to one thread (this
project's 2-core machine, ``benchmarks/results/threads.json``). Every ibin
worker pool is :func:`map_threads`, which keeps those libraries to one
thread while it runs (:func:`native_single_thread`).

BLAS and OpenMP are limited through ``threadpoolctl``, whose OpenBLAS limits
belong to one Python thread at a time (the first to set them; the others'
settings are ignored until it restores them), so each entrant limits and
restores in its own thread. OpenCV's ``cv2.setNumThreads`` is process-wide
and unowned: it is set when the first pool starts and restored when the
last one ends.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

_lock = threading.Lock()
_cv2: dict = {"depth": 0, "saved": None}
_controller = None


def _blas_controller():
    global _controller
    with _lock:
        if _controller is None:  # finding the libraries costs a few ms: once per process
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        return _controller


def _cv2_enter() -> None:
    import cv2

    with _lock:
        _cv2["depth"] += 1
        if _cv2["depth"] == 1:
            _cv2["saved"] = cv2.getNumThreads()
            cv2.setNumThreads(1)


def _cv2_exit() -> None:
    import cv2

    with _lock:
        _cv2["depth"] -= 1
        if _cv2["depth"] == 0:
            cv2.setNumThreads(_cv2["saved"])


@contextlib.contextmanager
def native_single_thread() -> Iterator[None]:
    """Keep BLAS, OpenMP and OpenCV to one thread each for the duration (nestable, thread-safe)."""
    _cv2_enter()
    try:
        with _blas_controller().limit(limits=1):
            yield
    finally:
        _cv2_exit()


def limit_process() -> None:
    """Keep the native libraries to one thread for the rest of this process (a sweep's worker process)."""
    import cv2

    _blas_controller().limit(limits=1)
    cv2.setNumThreads(1)


def map_threads(fn: Callable, items: Sequence, workers: int) -> list:
    """``[fn(x) for x in items]``, in ``workers`` threads when there is more than one item.

    The threads run with the native libraries kept to one thread each
    (:func:`native_single_thread`); one worker runs in the calling thread,
    the libraries as they are.
    """
    if workers > 1 and len(items) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with native_single_thread(), ThreadPoolExecutor(min(workers, len(items))) as ex:
            return list(ex.map(fn, items))
    return [fn(x) for x in items]
