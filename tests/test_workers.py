"""A search's screen and full comparisons in worker processes give the lead list of one thread."""

from __future__ import annotations

import csv
import logging
import os
import signal

import pytest

from .conftest import shared_path


@pytest.fixture
def slides_db(tmp_path, monkeypatch):
    """Fadul slides 1-3 (12 scans) on file; worker processes allowed on a database this small."""
    from ibin import _workers, ingest, open_database

    d = shared_path("cartridge", "fadul")
    with open(d / "key.csv") as f:
        files = sorted(r["file"] for r in csv.DictReader(f)
                       if r["firearm"] in ("fadul-slide-1", "fadul-slide-2", "fadul-slide-3"))
    db = open_database(tmp_path / "db", create=True)
    assert ingest(db, [d / f for f in files]).added == 12
    monkeypatch.setattr(_workers, "MIN_EXHIBITS", 0)
    yield db
    _workers.shutdown()
    db.close()


def _lists(db, workers: int) -> list:
    from ibin import SearchParams, search_exhibits

    # verify 3 of 11 candidates: the screen runs as well as the full comparisons
    p = SearchParams(top=3, verify=3, workers=workers)
    return [(ll.query_id, [(l.id, l.score, l.cmc, l.rotation_deg) for l in ll.leads])
            for ll in search_exhibits(db, params=p)]


@pytest.mark.realdata
def test_worker_processes_give_the_lead_lists_of_one_thread(slides_db, monkeypatch):
    import ibin.engine as engine
    from ibin import _workers

    alone = _lists(slides_db, 1)

    def not_here(*a, **k):
        raise AssertionError("compared in the calling process, not in a worker")

    # the workers import their own engine: only a search that stays in this process would call these
    monkeypatch.setattr(engine, "_compare_one", not_here)
    monkeypatch.setattr(engine, "_screen_items", not_here)
    pooled = _lists(slides_db, 2)
    assert pooled == alone
    pool = _workers._current["pool"]
    assert pool is not None and len(pool._ex._processes) == 2
    assert all(pid != os.getpid() for pid in pool._ex._processes)


@pytest.mark.realdata
def test_a_worker_that_dies_leaves_the_search_to_threads(slides_db, caplog):
    from ibin import _workers

    alone = _lists(slides_db, 1)
    _lists(slides_db, 2)  # the pool is up
    pool = _workers._current["pool"]
    victim = next(iter(pool._ex._processes))
    os.kill(victim, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="ibin._workers"):
        again = _lists(slides_db, 2)
    assert again == alone
    assert any("worker processes failed" in r.getMessage() for r in caplog.records)
    assert _workers._current["pool"] is not pool  # dropped; a later search starts a new one


def test_small_databases_and_one_worker_stay_in_threads(tmp_path):
    from ibin import _workers, open_database

    db = open_database(tmp_path / "db", create=True)
    try:
        assert _workers.pool_for(db, 1, 10**6) is None
        assert _workers.pool_for(db, 2, _workers.MIN_EXHIBITS - 1) is None
        assert _workers.pool_for(db, 2, 10**6, start=False) is None  # none up, none started
        assert _workers._current["pool"] is None
    finally:
        db.close()


@pytest.mark.realdata
def test_a_one_off_search_starts_no_worker_processes(slides_db):
    """A process's only lead list stays in threads (same leads); a pool already up is used; the CLI's one query is one-off."""
    from ibin import SearchParams, _workers, search_exhibits
    from ibin.cli import main

    alone = _lists(slides_db, 1)
    q = alone[0][0]
    p = SearchParams(top=3, verify=3, workers=2, one_off=True)
    ll = next(iter(search_exhibits(slides_db, [q], params=p)))
    assert _workers._current["pool"] is None
    assert [(l.id, l.score, l.cmc, l.rotation_deg) for l in ll.leads] == alone[0][1]
    assert main(["search", str(slides_db.path), "--id", q, "--format", "json"]) == 0
    assert _workers._current["pool"] is None
    assert main(["search", str(slides_db.path), "--id", q, "--id", alone[1][0], "--format", "json"]) == 0
    pool = _workers._current["pool"]  # two lead lists: worker processes
    assert pool is not None and _workers.pool_for(slides_db, 2, 12, start=False) is pool


def test_split_and_join_are_inverse():
    from ibin._workers import Pool

    pool = Pool.__new__(Pool)
    pool.workers = 2
    for n in (1, 3, 8, 9, 37):
        items = list(range(n))
        parts = pool.split(items)
        assert len(parts) == min(n, 8) and sorted(x for p in parts for x in p) == items
        assert Pool.join([[x * 10 for x in p] for p in parts]) == [x * 10 for x in items]


@pytest.mark.realdata
def test_a_script_without_a_main_guard_is_not_run_again_by_the_workers(slides_db, tmp_path):
    import subprocess
    import sys

    script = tmp_path / "lab_script.py"
    script.write_text(
        "import ibin, ibin._workers\n"
        "ibin._workers.MIN_EXHIBITS = 0\n"
        "print('script ran', flush=True)\n"
        f"db = ibin.open_database({str(slides_db.path)!r}, readonly=True)\n"
        "ll = next(iter(ibin.search_exhibits(db, ['Fadul_1-1'], params=ibin.SearchParams(top=3, verify=3))))\n"
        "print(ll.leads[0].id, ibin._workers._current['pool'] is not None)\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["script ran", "Fadul_1-2 True"], r.stdout
    assert "worker processes failed" not in r.stderr and "bootstrapping" not in r.stderr, r.stderr


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child its new parent has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_workers_end_when_their_parent_is_killed(tmp_path):
    """A parent killed outright (SIGKILL) must not leave its workers holding the database for ever."""
    import subprocess
    import sys
    import time

    from ibin import open_database

    open_database(tmp_path / "db", create=True).close()
    script = tmp_path / "parent.py"
    script.write_text(
        "import time\n"
        "from ibin import _workers\n"
        "if __name__ == '__main__':\n"
        f"    pool = _workers.Pool({str(tmp_path / 'db')!r}, 2)\n"
        "    print(*sorted(set(pool.map(_workers._ready, range(8)))), flush=True)\n"
        "    time.sleep(600)\n"
    )
    # stderr: the resource tracker reports the semaphores of the killed parent as it cleans them up
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True) as proc:
        try:
            pids = [int(p) for p in proc.stdout.readline().split()]
            assert pids and all(_alive(p) for p in pids)
        finally:
            proc.kill()
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


@pytest.mark.realdata
def test_a_pool_closed_under_a_search_leaves_it_to_threads(slides_db, monkeypatch):
    """A search of another database replaces the pool; a search still using the old one finishes in threads."""
    from ibin import _workers

    alone = _lists(slides_db, 1)
    real = _workers.Pool.map

    def closed_meanwhile(self, fn, tasks):
        self.close()
        return real(self, fn, tasks)

    monkeypatch.setattr(_workers.Pool, "map", closed_meanwhile)
    assert _lists(slides_db, 2) == alone


@pytest.mark.realdata
def test_searches_from_several_threads_share_the_pool(slides_db):
    """A service searching from several threads at once (each worker keeps two queries) gets every list right."""
    from concurrent.futures import ThreadPoolExecutor

    from ibin import SearchParams, open_database, search_exhibits

    alone = dict(_lists(slides_db, 1))
    p = SearchParams(top=3, verify=3, workers=2)

    def one(i):
        with open_database(slides_db.path, readonly=True) as db:  # a database handle per thread
            ll = next(iter(search_exhibits(db, [i], params=p)))
        return ll.query_id, [(l.id, l.score, l.cmc, l.rotation_deg) for l in ll.leads]

    with ThreadPoolExecutor(3) as ex:
        got = dict(ex.map(one, sorted(alone)))
    assert got == alone
