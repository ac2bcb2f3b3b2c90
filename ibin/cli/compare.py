"""Compare two scans directly: score, congruent matching cells, correlation and alignment.

The alignment (rotation_deg, dx_um, dy_um) is the rigid transform that
brings FILE_B onto FILE_A.
"""

from __future__ import annotations

import argparse
import json

HELP = "compare two scans"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file_a", metavar="FILE_A")
    p.add_argument("file_b", metavar="FILE_B")
    p.add_argument("--kind", default="cartridge", choices=["cartridge"])
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--pixel-um", type=float, metavar="X", help="pixel size in µm for images and .npy files")


def run(args: argparse.Namespace) -> int:
    import time

    from ..engine import compare

    t = time.perf_counter()
    r = compare(args.file_a, args.file_b, kind=args.kind, pixel_um=args.pixel_um)
    ms = (time.perf_counter() - t) * 1e3
    d = {
        "a": args.file_a,
        "b": args.file_b,
        "kind": args.kind,
        "score": round(r.score, 4),
        "cmc": r.cmc,
        "cells": r.cells,
        "cmc_a_in_b": r.cmc_ab.cmc,
        "cmc_b_in_a": r.cmc_ba.cmc,
        "ccf": round(r.ccf, 4),
        "rotation_deg": round(r.rotation_deg, 2),
        "dx_um": round(r.dx_um, 1),
        "dy_um": round(r.dy_um, 1),
        "overlap": round(r.overlap, 3),
        "cells_detail": [
            {"x_um": round(c.x_um, 1), "y_um": round(c.y_um, 1), "ccf": round(c.ccf, 3), "dx_um": c.dx_um,
             "dy_um": c.dy_um, "theta_deg": round(c.theta_deg, 2), "congruent": c.congruent}
            for c in r.cmc_ab.cells
        ],
        "time_ms": round(ms, 1),
    }
    if args.format == "json":
        print(json.dumps(d, indent=2))
    else:
        verdict = "at or above" if r.cmc >= 6 else "below"
        print(f"{args.file_a}\n  vs {args.file_b}")
        print(f"score {r.score:.2f}: {r.cmc} congruent matching cells of {r.cells} "
              f"({r.cmc_ab.cmc} A-in-B, {r.cmc_ba.cmc} B-in-A), {verdict} the NIST threshold of 6")
        print(f"areal correlation {r.ccf:.3f}; B onto A: rotate {r.rotation_deg:.1f}°, "
              f"shift ({r.dx_um:.0f}, {r.dy_um:.0f}) µm; overlap {r.overlap:.0%}; {ms:.0f} ms")
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import main as _main

    return _main(["compare", *(argv or [])])
