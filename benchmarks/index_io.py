"""Saving and loading index files as the database grows: streamed through FAISS against serialised in memory.

Every process that searches loads the index files once (a one-off ``ibin
search`` on the command line pays it each time), and every ingest that adds
vectors saves them. The polar signatures are kept in an exact (``Flat``)
index of 512 float32 values per signature: 2 GB at 1M exhibits. Until
2026-12-03 an index file was read whole into memory, hashed, copied into a
FAISS byte vector and deserialised from it (three copies, the FAISS copies
element by element), and saved by serialising into such a vector first.
Now (:func:`ibin.index._vectors.inspect`, :meth:`VectorIndex.save`) the file
is memory-mapped, hashed in place and read by FAISS in blocks, and saved by
FAISS writing straight into the file while it is hashed.

For each N, a ``Flat`` index of N random unit vectors of ``--dim`` values
(ids as the database gives them) is saved and loaded both ways, the two
alternating, ``--repeats`` times; the loaded vectors are checked equal to
the saved ones. Times are wall clock; the file is in the page cache when
loaded (as after an ingest), so a load from a cold disk adds the disk's
read time to both. Peak memory is the rise of the process's resident peak
(``VmHWM``, reset through ``/proc/self/clear_refs``) over its size before
the step: Linux only.

For the largest N, a fresh process then makes what a one-off ``ibin
search`` makes before its first candidate list, timed step by step: import
ibin and FAISS, load the index file, make the 8-bit signatures of the first
pass (:class:`ibin.features._polar.CoarseSignatures`, two threads as in a
search; one thread until 2026-12-03; Numba's import and the compiled
kernels' loading timed apart since then), and run one search
over all N signatures at every rotation (two threads). (The vectors are
random: the timings, not the matches, are what this measures.)

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


def _save_before(vi, path: Path) -> None:
    """How :meth:`VectorIndex.save` wrote an index file until 2026-12-03: serialised in memory first."""
    import faiss

    from ibin._fs import write_all
    from ibin.index._vectors import _MAGIC, faiss_version

    payload = faiss.serialize_index(vi.index)
    header = {"format": "ibin-index", "version": 1, "dim": vi.dim, "factory": vi.factory,
              "watermark": vi.watermark, "ntotal": vi.ntotal, "faiss": faiss_version(),
              "bytes": int(payload.nbytes), "sha256": hashlib.sha256(payload).hexdigest(), "catalog": None}
    head = json.dumps(header, sort_keys=True).encode()
    start = 8 + len(head)
    start += (-start) % 64
    tmp = path.with_name(path.name + ".tmp-before")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, _MAGIC + struct.pack("<I", len(head)) + head + b"\0" * (start - 8 - len(head)))
        write_all(fd, memoryview(payload))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _load_before(path: Path):
    """How :func:`ibin.index._vectors.inspect` read an index file until 2026-12-03 (checks kept, messages dropped)."""
    import faiss

    raw = path.read_bytes()
    (hlen,) = struct.unpack("<I", raw[4:8])
    meta = json.loads(raw[8 : 8 + hlen].decode())
    start = 8 + hlen + (-(8 + hlen)) % 64
    payload = memoryview(raw)[start:]
    assert len(payload) == meta["bytes"] and hashlib.sha256(payload).hexdigest() == meta["sha256"]
    return faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))


def _load_now(path: Path):
    from ibin.index._vectors import inspect

    got, problem = inspect(path)
    assert got is not None, problem
    return got[0]


def _matrix(index, dim: int) -> np.ndarray:
    from ibin.index import VectorIndex

    vi = VectorIndex.__new__(VectorIndex)
    vi.index, vi.dim, vi.factory, vi.watermark = index, dim, "Flat", 0
    return vi.matrix()[1]


_FIRST_SEARCH = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import faiss
from ibin.features._polar import CoarseSignatures, PolarParams, rotation_max_top
from ibin.index._vectors import inspect
t1 = time.perf_counter()
got, problem = inspect(sys.argv[1])
assert got is not None, problem
index = got[0]
base = faiss.downcast_index(index.index)
n, d = base.ntotal, base.d
x = faiss.rev_swig_ptr(base.get_xb(), n * d).reshape(n, d)
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
print(json.dumps({"imports_s": t1 - t0, "load_index_s": t2 - t1, "kernels_s": t2k - t2, "coarse_signatures_s": t3 - t2k,
                  "first_search_s": t4 - t3, "second_search_s": t5 - t4, "total_to_first_candidates_s": t4 - t0}))
"""


def first_search(path: Path) -> dict:
    """A fresh process's way to its first candidate list against the index file at ``path``, step by step (seconds)."""
    import subprocess
    import sys

    from ._common import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _FIRST_SEARCH, str(path)], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


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
        paths = {"now": work / f"index-io-{n}-now.faiss", "before": work / f"index-io-{n}-before.faiss"}
        rows = {m: {"save_s": [], "load_s": [], "save_peak_mb": [], "load_peak_mb": []} for m in paths}
        for r in range(repeats):
            for mode in (("now", "before") if r % 2 == 0 else ("before", "now")):
                p = paths[mode]
                saver = (lambda p=p: vi.save(p)) if mode == "now" else (lambda p=p: _save_before(vi, p))
                _, dt, mb = _measured(saver)
                rows[mode]["save_s"].append(dt)
                rows[mode]["save_peak_mb"].append(mb)
                loader = _load_now if mode == "now" else _load_before
                index, dt, mb = _measured(lambda p=p, loader=loader: loader(p))
                rows[mode]["load_s"].append(dt)
                rows[mode]["load_peak_mb"].append(mb)
                if not np.array_equal(_matrix(index, dim), ref):
                    raise AssertionError(f"{mode}: the loaded vectors differ from the saved ones")
                del index
        size = paths["now"].stat().st_size
        res = {"file_bytes": size, "file_bytes_before": paths["before"].stat().st_size}
        if n == max(sizes) and dim == 512:
            vi.save(paths["now"])
            runs = [first_search(paths["now"]) for _ in range(repeats)]
            res["fresh_process_first_search"] = {k: quantiles([r[k] for r in runs], (50,)) | {"all": [round(r[k], 3) for r in runs]}
                                                 for k in runs[0]}
            print(f"N={n:,}: a fresh process's first candidate list after "
                  f"{np.median([r['total_to_first_candidates_s'] for r in runs]):.2f} s "
                  f"(load {np.median([r['load_index_s'] for r in runs]):.2f} s, kernels "
                  f"{np.median([r['kernels_s'] for r in runs]):.2f} s, 8-bit signatures "
                  f"{np.median([r['coarse_signatures_s'] for r in runs]):.2f} s)", flush=True)
        for mode, row in rows.items():
            res[mode] = {k: quantiles(v, (50,)) | {"all": [round(x, 3) for x in v]} for k, v in row.items()}
        res["before_over_now_p50"] = {
            k: float(np.median(rows["before"][k]) / max(np.median(rows["now"][k]), 1e-9)) for k in ("save_s", "load_s")}
        out[str(n)] = res
        for p in paths.values():
            p.unlink(missing_ok=True)
        del vi, ref
        print(f"N={n:,}: save {np.median(rows['now']['save_s']):.2f} s (before {np.median(rows['before']['save_s']):.2f} s), "
              f"load {np.median(rows['now']['load_s']):.2f} s (before {np.median(rows['before']['load_s']):.2f} s), "
              f"load peak +{np.median(rows['now']['load_peak_mb']):.0f} MB (before +{np.median(rows['before']['load_peak_mb']):.0f} MB)",
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
        "what": "Saving and loading a Flat index file (the polar signatures' kind) as N grows: now (streamed "
                "through FAISS, memory-mapped and hashed in place) and before 2026-12-03 (serialised in memory).",
        "environment": env, "dim": a.dim, "repeats": a.repeats,
        "note": "wall seconds; loads from the page cache; peak_mb is the rise of the resident peak during the step",
        "sizes": res,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
