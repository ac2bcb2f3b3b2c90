"""ibin's worker threads keep the native libraries' thread pools to one thread, then restore them."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from ibin._threads import map_threads, native_single_thread
from ibin.features._polar import _chunked


def _blas_threads() -> list[int]:
    """Threads of the BLAS libraries with a process-wide pool (NumPy's and SciPy's OpenBLAS).

    An OpenBLAS built on OpenMP (FAISS bundles one) keeps a limit per calling thread, so a worker
    thread sees its own default; ibin's worker threads never call it.
    """
    return [lib["num_threads"] for lib in threadpool_info()
            if lib["user_api"] == "blas" and lib.get("threading_layer") != "openmp"]


@pytest.fixture
def two_threads_each():
    """The libraries as a user's process starts them on a 2-core machine (whatever the test environment pinned)."""
    if not _blas_threads():
        pytest.skip("no BLAS library loaded")
    before_cv = cv2.getNumThreads()
    with threadpool_limits(limits=2, user_api="blas"):
        cv2.setNumThreads(2)
        try:
            yield
        finally:
            cv2.setNumThreads(before_cv)


def test_map_threads_workers_see_one_thread_and_settings_come_back(two_threads_each):
    seen = map_threads(lambda _: (tuple(_blas_threads()), cv2.getNumThreads()), list(range(6)), workers=2)
    assert all(set(b) == {1} and c == 1 for b, c in seen), seen
    assert set(_blas_threads()) == {2} and cv2.getNumThreads() == 2
    # one worker: nothing is limited (the libraries may use the cores themselves)
    seen = map_threads(lambda _: (tuple(_blas_threads()), cv2.getNumThreads()), list(range(3)), workers=1)
    assert all(set(b) == {2} and c == 2 for b, c in seen), seen


def test_chunked_limits_blas_and_gives_the_same_result(two_threads_each):
    x = np.random.default_rng(0).standard_normal((5000, 48)).astype(np.float32)
    t = np.random.default_rng(1).standard_normal((48, 96)).astype(np.float32)
    out = np.empty(len(x), np.float32)
    seen = []

    def block(s, e):
        seen.append(tuple(_blas_threads()))
        out[s:e] = (x[s:e] @ t).max(axis=1)

    _chunked(block, len(x), 1000, workers=2)
    assert seen and all(set(b) == {1} for b in seen)
    np.testing.assert_allclose(out, (x @ t).max(axis=1), rtol=1e-5)
    assert set(_blas_threads()) == {2}


def test_overlapping_pools_restore_only_when_the_last_ends(two_threads_each):
    """Two searches in different threads: the first to finish must not lift the other's limit, nor leave one behind."""
    inside, release, seen = threading.Event(), threading.Event(), []

    def long_pool():
        with native_single_thread():
            inside.set()
            release.wait(10)
            seen.append(cv2.getNumThreads())

    th = threading.Thread(target=long_pool)
    th.start()
    assert inside.wait(10)
    with native_single_thread():
        assert set(_blas_threads()) == {1} and cv2.getNumThreads() == 1
    assert cv2.getNumThreads() == 1  # the long pool is still running
    release.set()
    th.join(10)
    assert seen == [1]
    assert set(_blas_threads()) == {2} and cv2.getNumThreads() == 2
