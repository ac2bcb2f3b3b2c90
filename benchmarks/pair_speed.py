"""Speed of the cartridge-case path on real scans: pairwise re-rank, ingest, Numba cache.

* re-rank: ``compare_prepared`` on pairs of prepared Fadul scans (6.25 µm/px,
  about 540 x 540), full-circle rotation search and CMC in both directions
  included; one thread; wall and CPU medians;
* baseline in the same process: the same pairs registered by a plain
  full-resolution sweep (masked NCC at every 5° on the 12.5 µm grid), the
  textbook approach our coarse-to-fine search replaces: the ratio is robust
  to machine load;
* ingest: scans per second into a fresh database (load, validate, prepare,
  store, index), after warm-up, one process;
* Numba cache: two fresh processes with an empty cache directory; the
  second must load the kernels instead of compiling them.

Run: ``python -m benchmarks.pair_speed``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import csv  # noqa: E402
import json  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import ROOT, SHARED, environment, quantiles, write  # noqa: E402


def _fadul_files() -> list[Path]:
    d = SHARED / "cartridge" / "fadul"
    if d.exists():
        return sorted(d.glob("*.x3p"))
    return sorted((ROOT / "data" / "fadul").glob("*.x3p"))


def _baseline_register(a, b):
    """Full-resolution 5° sweep with masked NCC: the straightforward registration."""
    from ibin.correlate import Pyramid
    from ibin.correlate._ncc import FixedSpectra, fft_shape, masked_ncc, rotate_stack, shift_window

    pa, pb = Pyramid(a.surface, a.pixel_um), Pyramid(b.surface, b.pixel_um)
    A, B = pa.levels[1], pb.levels[1]
    s = int(1000.0 / a.pixel_um)
    shape = fft_shape(A.shape, B.shape, s)
    fs = FixedSpectra(A, shape)
    win, _, _ = shift_window(shape, s)
    best = -2.0
    for chunk in np.array_split(np.arange(0.0, 360.0, 5.0), 12):
        c, _ = masked_ncc(fs, rotate_stack(B, chunk), min_overlap_px=0.5 * min(pa.count(1), pb.count(1)))
        best = max(best, float(np.where(win[None], c, -1).max()))
    return best


_CACHE_PROBE = r"""
import json, time, sys
t0 = time.perf_counter()
from ibin.scan import load_scan
from ibin.features import prepare_cartridge
from ibin.correlate import compare_prepared
a = prepare_cartridge(load_scan(sys.argv[1])); b = prepare_cartridge(load_scan(sys.argv[2]))
compare_prepared(a, b)
t1 = time.perf_counter()
from ibin.features._kernels_nb import polar_power_bins
from ibin.correlate._kernels_nb import cell_pearson_neighbourhood
st = [f.stats for f in (polar_power_bins, cell_pearson_neighbourhood)]
print(json.dumps({"seconds": t1 - t0, "cache_hits": sum(sum(s.cache_hits.values()) for s in st),
                  "cache_misses": sum(sum(s.cache_misses.values()) for s in st)}))
"""


def main(argv=None) -> dict:
    from ibin import ingest, open_database
    from ibin.correlate import compare_prepared
    from ibin.features import prepare_cartridge
    from ibin.scan import load_scan

    import cv2

    cv2.setNumThreads(1)  # one core: OpenCV would otherwise use its own thread pool
    env = environment("python -m benchmarks.pair_speed")
    files = _fadul_files()
    scans = {f.stem: load_scan(f) for f in files[:12]}
    prep = {k: prepare_cartridge(s) for k, s in scans.items()}
    pairs = list(itertools.combinations(sorted(prep), 2))[:40]
    compare_prepared(prep[pairs[0][0]], prep[pairs[0][1]])  # warm-up (Numba, FFT plans)
    wall, cpu = [], []
    for a, b in pairs:
        t, c = time.perf_counter(), time.process_time()
        compare_prepared(prep[a], prep[b])
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    # baseline on a few pairs, interleaved with ours for a fair ratio
    base, ours = [], []
    for a, b in pairs[:4]:
        c = time.process_time()
        _baseline_register(prep[a], prep[b])
        base.append(time.process_time() - c)
        c = time.process_time()
        compare_prepared(prep[a], prep[b])
        ours.append(time.process_time() - c)
    # ingest throughput after warm-up
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp) / "warm", create=True)
        ingest(db, files[:2])
        db.close()
        db = open_database(Path(tmp) / "db", create=True)
        batch = files[: min(len(files), 30)]
        t, c = time.perf_counter(), time.process_time()
        rep = ingest(db, batch)
        ingest_wall, ingest_cpu = time.perf_counter() - t, time.process_time() - c
        db.close()
    # peak memory of an ingest, in a process of its own (the CLI, as an examiner runs it)
    import resource

    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ibin", "ingest", str(Path(tmp) / "db"), *map(str, batch)],
                       capture_output=True, text=True, check=True, cwd=str(ROOT))
        cli_wall = time.perf_counter() - t
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        peak_mib = peak_kib / 1024 if peak_kib > before else None  # None: an earlier child was larger
    # numba cache across processes
    probe = []
    with tempfile.TemporaryDirectory() as cache:
        envp = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", _CACHE_PROBE, str(files[0]), str(files[1])],
                                 capture_output=True, text=True, env=envp, check=True, cwd=str(ROOT))
            probe.append(json.loads(out.stdout.strip().splitlines()[-1]))
        cached = sorted(p.name for p in Path(cache).rglob("*.nbi"))
    peer = None
    pc = SHARED / "cartridge" / "fadul" / "scratch-core-pair-scores.csv"
    if pc.exists():
        with open(pc) as f:
            peer = float(np.median([float(r["cpu_s"]) for r in csv.DictReader(f)]))
    result = {
        "what": "cartridge-case speed on Fadul scans (6.25 µm/px, ~540 x 540), one thread",
        "environment": env,
        "rerank_pair_ms": {"wall": quantiles(np.array(wall) * 1e3), "cpu": quantiles(np.array(cpu) * 1e3)},
        "baseline_full_resolution_sweep_cpu_ms": quantiles(np.array(base) * 1e3),
        "ours_same_pairs_cpu_ms": quantiles(np.array(ours) * 1e3),
        "speedup_vs_baseline": float(np.median(base) / np.median(ours)),
        "scratch_core_cpu_s_per_pair_median": peer,
        "speedup_vs_scratch_core": None if peer is None else float(peer / np.median(cpu)),
        "ingest": {"scans": rep.added, "wall_s": ingest_wall, "cpu_s": ingest_cpu,
                   "scans_per_s_wall": rep.added / ingest_wall, "scans_per_s_cpu": rep.added / ingest_cpu,
                   "cli_process": {"scans": len(batch), "wall_s_with_start_up": cli_wall, "peak_rss_mib": peak_mib}},
        "numba_cache": {"first_process": probe[0], "second_process": probe[1], "cache_index_files": cached},
    }
    out = write("pair_speed", result)
    print(f"re-rank median {np.median(wall) * 1e3:.0f} ms wall, {np.median(cpu) * 1e3:.0f} ms CPU "
          f"({result['speedup_vs_baseline']:.0f}x the full-resolution sweep); ingest "
          f"{result['ingest']['scans_per_s_wall']:.1f} scans/s; numba first/second process "
          f"{probe[0]['seconds']:.1f}/{probe[1]['seconds']:.1f} s, compiled {probe[0]['cache_misses']}/"
          f"{probe[1]['cache_misses']} kernels -> {out}")
    return result


if __name__ == "__main__":
    main()
