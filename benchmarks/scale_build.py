"""Build the populations of the scale benchmark (slow; resumable). See benchmarks/population.py.

Run: ``python -m benchmarks.scale_build --work DIR [--firearms 10000] [--sig-firearms 50000]``
writes DIR/pop-db (full pipeline, 2 shots per firearm) and DIR/signatures.npz
(signatures-only exhibits, 4 shots per firearm). ``--db NAME`` writes the
full-pipeline database to DIR/NAME instead; the larger population of
``planted --population`` is ``--db pop-db-100k --firearms 50000`` (100,000
exhibits; a copy of DIR/pop-db there first saves rebuilding its 20,000, which
are the same exhibits: the build skips exhibits already on file).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .population import build_database, signature_population, validate_coarse


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--firearms", type=int, default=10_000)
    ap.add_argument("--shots", type=int, default=2)
    ap.add_argument("--sig-firearms", type=int, default=50_000)
    ap.add_argument("--sig-shots", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--db", default="pop-db", help="name of the full-pipeline database under DIR")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    log = a.work / "build.log"

    def note(msg: str) -> None:
        with open(log, "a") as f:
            f.write(time.strftime("%H:%M:%S ") + msg + "\n")

    t = time.time()
    n = build_database(a.work / a.db, a.firearms, a.shots, workers=a.workers,
                       progress=lambda i, tot: note(f"full pipeline {i}/{tot}"))
    note(f"full pipeline: {n} added in {time.time() - t:.0f} s")
    sig = a.work / "signatures.npz"
    n_total = a.sig_firearms * a.sig_shots
    if n_total > 0 and (not sig.exists() or len(np.load(sig)["firearm"]) < n_total):
        # (--sig-firearms 0 writes none; a smaller file from an earlier run is made again)
        t = time.time()
        polar = np.zeros((n_total, 2, 8, 32), np.complex64)
        anchors = np.full((n_total, 2), -1, np.int8)  # 0 firing pin, 1 primer, 2 centroid, -1 none
        spectral = np.zeros((n_total, 256), np.float32)
        firearm = np.zeros(n_total, np.int64)
        code = {"firing_pin": 0, "primer": 1, "centroid": 2}
        for i, s in enumerate(signature_population(a.sig_firearms, a.sig_shots, workers=a.workers)):
            k = len(s.anchors)
            polar[i, :k] = s.polar[:2]
            anchors[i, :k] = [code[x] for x in s.anchors[:2]]
            spectral[i] = s.spectral
            firearm[i] = s.firearm
            if (i + 1) % 5000 == 0:
                note(f"signatures {i + 1}/{n_total}")
        np.savez(sig, polar=polar, anchors=anchors, spectral=spectral, firearm=firearm)
        note(f"signatures: {n_total} in {time.time() - t:.0f} s")
    (a.work / "validation.json").write_text(json.dumps(validate_coarse(40), indent=1))
    note("done")


if __name__ == "__main__":
    main()
