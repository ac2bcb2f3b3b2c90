"""Saving and loading index files as the database grows: read in place (version 2) against read into memory (version 1).

Every process that searches loads the index files once (a one-off ``ibin
search`` on the command line pays it each time), and every ingest that adds
vectors saves them. The polar signatures are kept in an exact (``Flat``)
index of 512 float32 values per signature: 2 GB at 1M exhibits.

Since 2026-12-04 an index file is version 2 (:func:`ibin.index._vectors._read`):
an exact index is saved with its vectors on a 64-byte boundary of the file
and its checksum taken per 64 MiB block, and :meth:`VectorIndex.load` reads
it in place: the blocks are verified in parallel and FAISS's zero-copy
reader keeps the vectors in the file's mapped pages. The first add or
removal copies them once, with an eighth of room to grow. Version 1 files
(2026-12-03) kept the SHA-256 of the whole payload; they are still read as
then: hashed in one thread, read by FAISS into its own memory, which the
first add grows by doubling (one more copy). (Until 2026-12-03 a file was
also serialised in memory on saving and read through an in-memory copy;
those numbers are in docs/RESULTS.md.)

For each N, a ``Flat`` index of N random unit vectors of ``--dim`` values
(ids as the database gives them) is saved and loaded in both versions, the
two alternating, ``--repeats`` times, each through the current
:meth:`VectorIndex.load` (which reads a version 1 file as before); the
loaded vectors are checked equal to the saved ones, then one vector is
added (as a process does when the file lacks the newest: a one-off search
after a recent ingest) and timed. Times are wall clock; the file is in the
page cache when loaded (as after an ingest), so a load from a cold disk adds
the disk's read time to both. Peak memory is the rise of the process's
resident peak (``VmHWM``, reset through ``/proc/self/clear_refs``) over its
size before the step, mapped file pages included: Linux only.

For the largest N, fresh processes then make what a one-off ``ibin search``
makes before its first candidate list, timed step by step, alternating the
two files: import ibin and FAISS, load the index file, Numba's import and
the compiled kernels' loading, the first pass's 8-bit signatures
(:class:`ibin.features._polar.CoarseSignatures`, two threads as in a
search; they read every signature, so with the file read in place this
step also maps its pages), and one search over all N signatures at every
rotation (two threads). (The vectors are random: the timings, not the
matches, are what this measures.)

Run: ``python -m benchmarks.index_io --work DIR [--sizes 100000,1000000] [--repeats 3] [--dim 512]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import environment, quantiles, write  # noqa: E402


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _measured(fn):
    """``(result, seconds, peak resident memory rise in MB)`` of ``fn()``."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    except OSError:
        pass
    before = _status_kb("VmRSS")
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    return out, dt, max(0, _status_kb("VmHWM") - before) / 1024


def _save_v1(vi, path: Path) -> None:
    """How :meth:`VectorIndex.save` wrote an index file on 2026-12-03 (version 1): streamed, the SHA-256 of the whole payload."""
    import faiss

    from ibin._fs import write_all
    from ibin.index._vectors import _HEADER_BYTES, _MAGIC, faiss_version

    tmp = path.with_name(path.name + ".tmp-v1")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.lseek(fd, _HEADER_BYTES, os.SEEK_SET)
        sha, size = hashlib.sha256(), 0

        def sink(chunk: bytes) -> int:
            nonlocal size
            sha.update(chunk)
            write_all(fd, chunk)
            size += len(chunk)
            return len(chunk)

        faiss.write_index(vi.index, faiss.PyCallbackIOWriter(sink))
        header = {"format": "ibin-index", "version": 1, "dim": vi.dim, "factory": vi.factory,
                  "watermark": vi.watermark, "ntotal": vi.ntotal, "faiss": faiss_version(),
                  "bytes": size, "sha256": sha.hexdigest(), "catalog": None}
        head = json.dumps(header, sort_keys=True).encode()
        room = _HEADER_BYTES - 8
        os.lseek(fd, 0, os.SEEK_SET)
        write_all(fd, _MAGIC + struct.pack("<I", room) + head + b" " * (room - len(head)))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _load(path: Path, dim: int):
    from ibin.index import VectorIndex

    vi = VectorIndex.load(path, dim, None)
    assert vi is not None, f"{path}: not loaded"
    return vi


_FIRST_SEARCH = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import faiss
from ibin.features._polar import CoarseSignatures, PolarParams, rotation_max_top
from ibin.index import VectorIndex
t1 = time.perf_counter()
vi = VectorIndex.load(sys.argv[1], int(sys.argv[2]), None)
assert vi is not None
_, x = vi.matrix()
t2 = time.perf_counter()
pp = PolarParams()
CoarseSignatures.from_vectors(x[:1], pp.rings_kept, pp.harmonics, workers=2)  # Numba imported, kernels loaded
t2k = time.perf_counter()
coarse = CoarseSignatures.from_vectors(x, pp.rings_kept, pp.harmonics, workers=2)  # as a search's two workers
t3 = time.perf_counter()
rng = np.random.default_rng(1)
q = (rng.standard_normal((pp.rings_kept, pp.harmonics)) + 1j * rng.standard_normal((pp.rings_kept, pp.harmonics))).astype(np.complex64)
rotation_max_top(q, x, 300, coarse=coarse, workers=2)
t4 = time.perf_counter()
rotation_max_top(q, x, 300, coarse=coarse, workers=2)
t5 = time.perf_counter()
print(json.dumps({"in_place": vi.mapped, "imports_s": t1 - t0, "load_index_s": t2 - t1, "kernels_s": t2k - t2, "coarse_signatures_s": t3 - t2k,
                  "first_search_s": t4 - t3, "second_search_s": t5 - t4, "total_to_first_candidates_s": t4 - t0}))
"""


def first_search(path: Path, dim: int) -> dict:
    """A fresh process's way to its first candidate list against the index file at ``path``, step by step (seconds)."""
    import subprocess
    import sys

    from ._common import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _FIRST_SEARCH, str(path), str(dim)], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


MODES = ("now", "v1")


def run(work: Path, sizes: list[int], repeats: int, dim: int) -> dict:
    from ibin.index import VectorIndex

    work.mkdir(parents=True, exist_ok=True)
    out = {}
    rng = np.random.default_rng(20261203)
    for n in sizes:
        vi = VectorIndex(dim)
        for s in range(0, n, 100_000):
            x = rng.standard_normal((min(n, s + 100_000) - s, dim), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            vi.add(np.arange(s, s + len(x), dtype=np.int64) << 8, x)
        vi.watermark = (n - 1) << 8
        ref = vi.matrix()[1]
        one = rng.standard_normal((1, dim), dtype=np.float32)
        paths = {m: work / f"index-io-{n}-{m}.faiss" for m in MODES}
        rows = {m: {k: [] for k in ("save_s", "load_s", "first_add_s", "save_peak_mb", "load_peak_mb", "first_add_peak_mb")}
                for m in MODES}
        for r in range(repeats):
            for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                p = paths[mode]
                saver = (lambda p=p: vi.save(p)) if mode == "now" else (lambda p=p: _save_v1(vi, p))
                _, dt, mb = _measured(saver)
                rows[mode]["save_s"].append(dt)
                rows[mode]["save_peak_mb"].append(mb)
                got, dt, mb = _measured(lambda p=p: _load(p, dim))
                rows[mode]["load_s"].append(dt)
                rows[mode]["load_peak_mb"].append(mb)
                if got.mapped != (mode == "now"):
                    raise AssertionError(f"{mode}: read in place {got.mapped}")
                if not np.array_equal(got.matrix()[1], ref):
                    raise AssertionError(f"{mode}: the loaded vectors differ from the saved ones")
                _, dt, mb = _measured(lambda got=got: got.add(np.array([n << 8], np.int64), one))
                rows[mode]["first_add_s"].append(dt)
                rows[mode]["first_add_peak_mb"].append(mb)
                if got.ntotal != n + 1 or not np.array_equal(got.matrix()[1][-1], one[0]):
                    raise AssertionError(f"{mode}: the vector added is not there")
                del got
        res = {f"file_bytes_{m}": paths[m].stat().st_size for m in MODES}
        if n == max(sizes) and dim == 512:
            runs = {m: [] for m in MODES}
            for r in range(repeats):
                for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                    runs[mode].append(first_search(paths[mode], dim))
            res["fresh_process_first_search"] = {
                m: {k: quantiles([r[k] for r in rs], (50,)) | {"all": [round(r[k], 3) for r in rs]}
                    for k in rs[0] if k != "in_place"} | {"in_place": rs[0]["in_place"]} for m, rs in runs.items()}
            for m, rs in runs.items():
                print(f"N={n:,} {m}: a fresh process's first candidate list after "
                      f"{np.median([r['total_to_first_candidates_s'] for r in rs]):.2f} s "
                      f"(load {np.median([r['load_index_s'] for r in rs]):.2f} s, kernels "
                      f"{np.median([r['kernels_s'] for r in rs]):.2f} s, 8-bit signatures "
                      f"{np.median([r['coarse_signatures_s'] for r in rs]):.2f} s)", flush=True)
        for mode, row in rows.items():
            res[mode] = {k: quantiles(v, (50,)) | {"all": [round(x, 3) for x in v]} for k, v in row.items()}
        res["v1_over_now_p50"] = {
            k: float(np.median(rows["v1"][k]) / max(np.median(rows["now"][k]), 1e-9))
            for k in ("save_s", "load_s", "first_add_s")}
        out[str(n)] = res
        for p in paths.values():
            p.unlink(missing_ok=True)
        del vi, ref
        print(f"N={n:,}: save {np.median(rows['now']['save_s']):.2f} s (v1 {np.median(rows['v1']['save_s']):.2f} s), "
              f"load {np.median(rows['now']['load_s']):.2f} s (v1 {np.median(rows['v1']['load_s']):.2f} s), "
              f"first add {np.median(rows['now']['first_add_s']):.2f} s (v1 {np.median(rows['v1']['first_add_s']):.2f} s), "
              f"load peak +{np.median(rows['now']['load_peak_mb']):.0f} MB (v1 +{np.median(rows['v1']['load_peak_mb']):.0f} MB)",
              flush=True)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for the index files (2 GB each at 1M)")
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dim", type=int, default=512, help="values per vector (512: a polar signature)")
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",")]
    cmd = f"python -m benchmarks.index_io --work DIR --sizes {a.sizes} --repeats {a.repeats} --dim {a.dim}"
    env = environment(cmd)
    res = run(a.work, sizes, a.repeats, a.dim)
    path = write("index_io", {
        "what": "Saving and loading a Flat index file (the polar signatures' kind) as N grows, then adding one vector: "
                "now (version 2: read in place, checksum per block) and version 1 (2026-12-03: read into memory).",
        "environment": env, "dim": a.dim, "repeats": a.repeats,
        "note": "wall seconds; loads from the page cache; peak_mb is the rise of the resident peak during the step",
        "sizes": res,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
