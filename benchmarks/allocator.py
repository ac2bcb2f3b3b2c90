"""Full comparisons with the C allocator as glibc sets it and as ibin sets it (:func:`ibin.keep_freed_memory`).

A full comparison allocates hundreds of short-lived arrays of 0.1-3 MB.
With glibc's defaults, whether that memory is handed back to the system when
freed (and faulted in again, zeroed, for the next array) depends on what the
process did before: glibc raises its mmap threshold only after freeing a
large mapped block. A search worker reads its exhibits from the database's
memory-mapped store and may never do so. ibin's command line and worker
processes keep freed memory instead. The mode is fixed when a process first
sets it, so each mode runs in fresh processes, alternating; each does what a
search worker does: it opens a database of the first ``--scans`` Fadul
scans (``../shared/data``, ingested once beforehand) read-only, reads the
prepared exhibits from the store and builds their pyramids, then times the
full comparison of every pair, one thread, counting the page faults the
comparisons cause. The results are checked identical.

With ``--work DIR``, whole lead lists too: on the planted database
(``DIR/planted-pop-db-100k``), blocks of Fadul queries are searched with the
worker processes started under each mode in turn (``IBIN_KEEP_FREED_MEMORY``
0 or 1; the pool stopped, its processes waited for, started again and warmed
by one search), so the same queries run in both; the stage times, the leads
and the workers' peak resident memory are compared. The benchmark's own
process keeps freed memory in both (it runs the candidate stage).

Run: ``python -m benchmarks.allocator [--scans 8] [--rounds 3] [--work DIR [--db planted-pop-db-100k] [--queries 20] [--blocks 4]]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import FADUL, ROOT, environment, quantiles, write  # noqa: E402

_CHILD = textwrap.dedent("""
    import itertools, json, resource, sys, time
    from ibin._alloc import keep_freed_memory
    kept = keep_freed_memory() if sys.argv[1] == "ibin" else False
    from ibin import open_database
    from ibin.engine import _compare_one, _Cache
    db = open_database(sys.argv[2], readonly=True)
    cache = _Cache()
    recs = db.list(kind="cartridge")
    prepared = [cache.prepared(db, r) for r in recs]
    pairs = list(itertools.combinations(range(len(recs)), 2))
    for i, j in pairs[:3]:
        _compare_one(prepared[i], prepared[j])
    ms, faults, scores = [], [], []
    for i, j in pairs:
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        r = _compare_one(prepared[i], prepared[j])
        ms.append((time.perf_counter() - t) * 1e3)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        scores.append([r.score, r.rotation_deg, r.dx_um, r.dy_um])
    print(json.dumps({"kept": kept, "ms": ms, "faults": faults, "scores": scores}))
""")


def _child(mode: str, db: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "IBIN_KEEP_FREED_MEMORY"}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(db)], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


STAGES = ("candidates", "screen", "rerank", "expand", "total")


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def lead_lists(work: Path, db_name: str, queries: int, blocks: int) -> dict:
    """Lead lists with the workers under glibc's defaults and under ibin's setting, blocks of the same queries alternating."""
    from ibin import SearchParams, _workers, open_database, search_exhibits

    from ._common import planted_database, planted_queries, restart_workers, worker_processes

    db = open_database(planted_database(work, db_name), readonly=True)
    recs = db.list(kind="cartridge")
    fadul, syn = planted_queries(recs, queries, 1, seed=5)
    params = SearchParams()
    modes = {"glibc defaults": "0", "ibin (keep freed memory)": "1"}
    times = {m: {s: [] for s in STAGES} for m in modes}
    peaks: dict[str, list[float]] = {m: [] for m in modes}
    leads: dict[str, dict[str, list]] = {m: {} for m in modes}
    before = os.environ.get("IBIN_KEEP_FREED_MEMORY")
    try:
        for b in range(blocks):
            chunk = fadul[b::blocks]
            for m in (list(modes) if b % 2 == 0 else list(modes)[::-1]):
                restart_workers(db, params, len(recs), syn[0],
                                before_start=functools.partial(os.environ.__setitem__, "IBIN_KEEP_FREED_MEMORY", modes[m]))
                for q in chunk:
                    ll = next(iter(search_exhibits(db, [q], params=params)))
                    for s in STAGES:
                        times[m][s].append(ll.timing_ms[s])
                    leads[m][q] = [(ld.id, round(ld.score, 9)) for ld in ll.leads]
                peaks[m] += [_peak_mib(p.pid) for p in worker_processes()]
                print(f"block {b + 1} {m:26s} total p50 {np.median(times[m]['total'][-len(chunk):]):.0f} ms", flush=True)
    finally:
        _workers.shutdown()
        if before is None:
            os.environ.pop("IBIN_KEEP_FREED_MEMORY", None)
        else:
            os.environ["IBIN_KEEP_FREED_MEMORY"] = before
        db.close()
    out = {m: {s: quantiles(v) for s, v in st.items()} for m, st in times.items()}
    return {
        "database": db_name, "exhibits_on_file": len(recs), "queries": fadul, "blocks": blocks, "lead_list_ms": out,
        "defaults_over_ibin_p50": {s: out["glibc defaults"][s]["p50"] / out["ibin (keep freed memory)"][s]["p50"]
                                   for s in STAGES},
        "worker_peak_rss_mib": {m: quantiles(v, (50,)) | {"max": max(v)} for m, v in peaks.items()},
        "same_leads": leads["glibc defaults"] == leads["ibin (keep freed memory)"],
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scans", type=int, default=8, help="Fadul scans (every pair compared)")
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per mode, alternating")
    ap.add_argument("--work", type=Path, help="with the planted databases: whole lead lists too")
    ap.add_argument("--db", default="planted-pop-db-100k", help="planted database under DIR")
    ap.add_argument("--queries", type=int, default=20, help="Fadul queries of the lead-list part")
    ap.add_argument("--blocks", type=int, default=4, help="blocks of queries, the modes alternating")
    a = ap.parse_args(argv)
    cmd = f"python -m benchmarks.allocator --scans {a.scans} --rounds {a.rounds}"
    if a.work is not None:
        cmd += f" --work DIR --db {a.db} --queries {a.queries} --blocks {a.blocks}"
    env = environment(cmd)
    from ibin import ingest

    tmp = tempfile.TemporaryDirectory(prefix="ibin-allocator-")
    db = Path(tmp.name) / "db"
    rep = ingest(db, sorted(FADUL.glob("*.x3p"))[: a.scans], user="benchmark")
    if rep.added != a.scans:
        raise RuntimeError(f"ingest: {rep.summary()}")
    runs: dict[str, list[dict]] = {"glibc defaults": [], "ibin (keep freed memory)": []}
    for r in range(a.rounds):
        order = ("glibc defaults", "ibin (keep freed memory)") if r % 2 == 0 else ("ibin (keep freed memory)", "glibc defaults")
        for mode in order:
            got = _child("ibin" if mode.startswith("ibin") else "default", db)
            if got["kept"] != mode.startswith("ibin"):
                raise RuntimeError(f"{mode}: the allocator was {'not ' if not got['kept'] else ''}set as asked")
            runs[mode].append(got)
            print(f"round {r + 1} {mode:26s} {np.median(got['ms']):6.1f} ms per comparison (median), "
                  f"{np.median(got['faults']):7.0f} page faults", flush=True)
    ref = runs["glibc defaults"][0]["scores"]
    same = all(run["scores"] == ref for rs in runs.values() for run in rs)
    res = {}
    for mode, rs in runs.items():
        per_round = [float(np.median(x["ms"])) for x in rs]
        res[mode] = {"ms_per_comparison_round_medians": per_round, "ms_per_comparison": quantiles(per_round, (50,)),
                     "page_faults_per_comparison": float(np.median([f for x in rs for f in x["faults"]]))}
    ratio = res["glibc defaults"]["ms_per_comparison"]["p50"] / res["ibin (keep freed memory)"]["ms_per_comparison"]["p50"]
    print(f"defaults / ibin: {ratio:.2f}x; identical results: {same}", flush=True)
    ll = lead_lists(a.work, a.db, a.queries, a.blocks) if a.work is not None else None
    if ll is not None:
        r = ll["defaults_over_ibin_p50"]
        print("lead lists, defaults / ibin (p50): " + "  ".join(f"{s} {v:.2f}x" for s, v in r.items())
              + f"; worker peak RSS {ll['worker_peak_rss_mib']}; same leads: {ll['same_leads']}")
    path = write("allocator", {
        "what": "Full comparisons of Fadul pairs as a search worker makes them (exhibits read from a database, one "
                "thread) with glibc's allocator defaults and with ibin.keep_freed_memory(), fresh processes alternating.",
        "environment": env, "scans": a.scans, "pairs": len(ref), "rounds": a.rounds,
        "modes": res, "defaults_over_ibin_p50": ratio, "identical_results": same,
        "lead_lists": ll,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
