"""Shared helpers for benchmarks: environment record, result files, statistics."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path

# NumPy is imported inside the helpers: importing it here would start its BLAS
# threads before single_thread() could pin them (the variables are read once).

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("IBIN_SHARED_DATA", ROOT.parent / "shared" / "data"))


_PINNED = False


def single_thread() -> None:
    """Pin numerical libraries to one thread (call before importing them); keep freed memory as ibin's processes do.

    Raises when NumPy is already imported: its BLAS would have started its
    threads, and the benchmark would silently measure more than one. The C
    allocator is set as the command line and the worker processes set it
    (:func:`ibin.keep_freed_memory`), so that work done in the benchmark's
    own process is measured as ``ibin`` runs it and compares fairly with
    work done in worker processes.
    """
    import sys

    global _PINNED
    if _PINNED:  # a second benchmark module imported by the first
        return
    if "numpy" in sys.modules:
        raise RuntimeError("single_thread() must run before NumPy is imported")
    _PINNED = True
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from ibin._alloc import keep_freed_memory

    keep_freed_memory()


def environment(command: str) -> dict:
    """Machine, load, software versions and the command that produced a result."""
    from ibin._alloc import keeps_freed_memory
    from ibin.cli.info import versions

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_start": load},
        "versions": versions(),
        "allocator_keeps_freed_memory": keeps_freed_memory(),
        "command": command,
    }


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(payload, indent=2, default=_default) + "\n")
    return out


def variant(base: str, flag: str, value: str, default: str) -> tuple[str, str]:
    """Result name and command-line suffix of a run on a database other than the default one.

    ``variant("planted", "--population", "pop-db-100k", "pop-db")`` gives
    ``("planted_pop_db_100k", " --population pop-db-100k")``; the default
    value gives ``("planted", "")``, so the default run keeps its file.
    """
    if value == default:
        return base, ""
    return f"{base}_{value.replace('-', '_')}", f" {flag} {value}"


FADUL = SHARED / "cartridge" / "fadul"


def fadul_key(directory: Path = FADUL) -> dict[str, str]:
    """Firearm of each Fadul cartridge case, by exhibit id (file name without ``.x3p``), from ``key.csv``."""
    import csv

    with open(directory / "key.csv", newline="") as f:
        return {r["file"][:-4]: r["firearm"] for r in csv.DictReader(f)}


def planted_database(work: Path, name: str) -> Path:
    """``work / name``, a database made by :mod:`benchmarks.planted`; exits saying how to make it when missing."""
    path = work / name
    if not path.exists():
        population = "pop-db" if name == "planted-db" else name.removeprefix("planted-")
        raise SystemExit(f"{path}: no planted database (make it with python -m benchmarks.planted "
                         f"--work {work} --population {population})")
    return path


def planted_queries(recs, fadul: int, synthetic: int, seed: int) -> tuple[list[str], list[str]]:
    """Queries of a planted database: every (40 // ``fadul``)-th Fadul exhibit (at most ``fadul``) and a seeded sample of ``synthetic`` synthetic ones."""
    import numpy as np

    fa = sorted(r.id for r in recs if r.id.startswith("Fadul_"))[:: max(1, 40 // max(1, fadul))][:fadul]
    syn = [r.id for r in recs if r.id.startswith("syn-")]
    pick = np.random.default_rng(seed).choice(len(syn), size=min(synthetic, len(syn)), replace=False)
    return fa, [syn[i] for i in pick]


def new_hits() -> dict:
    """Hit counts of a planted database's queries, to fill with :func:`count_hit`."""
    return {"fadul_top1": 0, "fadul_top10_all_mates": 0, "synthetic_top1": 0}


def count_hit(hits: dict, query: str, ids: list[str], key: dict[str, str]) -> None:
    """Add one lead list (its lead ids, best first) to ``hits``: the Fadul query's mates (``key``) or the synthetic one's twin first."""
    if query in key:
        mates = {n for n in key if n != query and key[n] == key[query]}
        hits["fadul_top1"] += bool(ids) and key.get(ids[0]) == key[query]
        hits["fadul_top10_all_mates"] += mates <= set(ids[:10])
    else:
        hits["synthetic_top1"] += bool(ids) and ids[0].rsplit("-", 1)[0] == query.rsplit("-", 1)[0]


def worker_processes() -> list:
    """The processes of the current search worker pool (:mod:`ibin._workers`); empty without one."""
    from ibin import _workers

    pool = _workers._current["pool"]
    return list(getattr(pool._ex, "_processes", {}).values()) if pool is not None else []


def restart_workers(db, params, on_file: int, warm_up: str, before_start=None) -> None:
    """New search worker processes, the old ones gone, warmed by one search for ``warm_up``.

    The old processes are waited for (``shutdown()`` does not wait), so what
    they held (maps of the store) is gone; ``before_start()``, when given,
    runs between their end and the new pool's start.
    """
    from ibin import _workers, search_exhibits

    procs = worker_processes()
    _workers.shutdown()
    for p in procs:
        p.join(30)
    if before_start is not None:
        before_start()
    next(iter(search_exhibits(db, [warm_up], params=params)))  # imports, compiled kernels, FFT plans
    if _workers.pool_for(db, params.workers, on_file) is None:
        raise RuntimeError("no worker pool: the lead lists would run in threads")


def _default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def auc(same, diff) -> float:
    """ROC AUC: probability that a same-source score beats a different-source one (ties count half)."""
    import numpy as np

    s = np.asarray(same, dtype=np.float64)[:, None]
    d = np.asarray(diff, dtype=np.float64)[None, :]
    return float(np.mean((s > d) + 0.5 * (s == d)))


def eer(same, diff) -> float:
    """Equal error rate of a threshold on the scores."""
    import numpy as np

    s, d = np.asarray(same, float), np.asarray(diff, float)
    best = 1.0
    for t in np.unique(np.concatenate([s, d])):
        fnr = float(np.mean(s < t))
        fpr = float(np.mean(d >= t))
        best = min(best, max(fnr, fpr))
    return best


def quantiles(x, qs=(50, 95)) -> dict:
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    return {f"p{q}": float(np.percentile(x, q)) for q in qs} | {"n": int(x.size)}


def ab_times(times: dict[str, list[float]], digits: int = 3) -> dict:
    """Timings of an A/B run (``{"now": [...], "before": [...]}``): each mode's quantiles and values, and ``before / now`` of the medians."""
    out = {m: quantiles(v) | {"all": [round(x, digits) for x in v]} for m, v in times.items()}
    out["before_over_now_p50"] = out["before"]["p50"] / out["now"]["p50"]
    return out


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def family_cpu_s() -> float:
    """CPU seconds of this process and of its child processes (a search's worker pool) so far.

    Imports nothing beyond the standard library, so a benchmark's child
    process may use it without pinning its native libraries.
    """
    me = os.getpid()
    kids = []
    for d in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        kids.append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    return process_cpu_s(me) + sum(process_cpu_s(k) for k in kids)
