"""Compare two scans directly: score, congruent matching cells, correlation and alignment.

The alignment (rotation_deg, dx_um, dy_um) is the rigid transform that
brings FILE_B onto FILE_A.

Bullets (--kind bullet): give the lands of bullet A in land order, then
--vs and the lands of bullet B (- for a land not scanned). The result is the
bullet score (the best phase's mean land correlation), the phase (land i of
A pairs with land i + phase of B), the land pairs of that phase with their
striae features, and the full land-by-land correlation matrix.
"""

from __future__ import annotations

import argparse
import json
import math

HELP = "compare two scans (or two bullets)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", metavar="FILE", nargs="+",
                   help="FILE_A FILE_B; with --kind bullet, the land files of bullet A (then --vs and those of B)")
    p.add_argument("--vs", nargs="+", metavar="FILE", help="what FILE(s) are compared with (bullet B's land files)")
    p.add_argument("--kind", default="cartridge", choices=["cartridge", "bullet"])
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--pixel-um", type=float, metavar="X", help="pixel size in µm for images and .npy files")


def run(args: argparse.Namespace) -> int:
    if args.kind == "bullet":
        return _run_bullet(args)
    files = list(args.files) + list(args.vs or [])
    if len(files) != 2:
        raise ValueError(f"compare needs two scans (FILE_A FILE_B or FILE_A --vs FILE_B), got {len(files)}")
    args.file_a, args.file_b = files
    return _run_cartridge(args)


def _run_cartridge(args: argparse.Namespace) -> int:
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


def _run_bullet(args: argparse.Namespace) -> int:
    import time

    from ..engine import compare

    if not args.vs:
        raise ValueError("give bullet B's land files after --vs (ibin compare --kind bullet A1 A2 ... --vs B1 B2 ...)")
    a = [None if f.strip() == "-" else f for f in args.files]
    b = [None if f.strip() == "-" else f for f in args.vs]
    t = time.perf_counter()
    r = compare(a, b, kind="bullet", pixel_um=args.pixel_um)
    ms = (time.perf_counter() - t) * 1e3
    d = {"a": args.files, "b": args.vs, "kind": "bullet", **r.to_dict(), "time_ms": round(ms, 1)}
    if args.format == "json":
        print(json.dumps(d, indent=2))
        return 0
    p = r.n_positions
    print("bullet A: " + ", ".join(args.files))
    print("bullet B: " + ", ".join(args.vs))
    if not math.isfinite(r.score):
        print("no land pair overlaps enough to compare")
        return 0
    how = "best land correlation (one side is a single land)" if r.fragment else "mean land correlation of the best phase"
    print(f"score {r.score:.3f} ({how}); phase {r.phase}: land i of A with land i+{r.phase} of B; "
          f"margin over the next phase {r.phase_margin:.3f}; {ms:.0f} ms")
    print("land correlation (rows: A, columns: B; * = the phase)")
    print("      " + "".join(f"B{j + 1:<6d}" for j in range(p)))
    for i in range(p):
        cells = []
        for j in range(p):
            v = r.ccf[i, j]
            mark = "*" if (j - i) % p == r.phase else " "
            cells.append(("  -   " if not math.isfinite(v) else f"{v:6.3f}")[:6] + mark)
        print(f"A{i + 1:<4d} " + "".join(cells))
    for l in r.lands:
        f = l.to_dict()
        print(f"  A{l.query_land} ~ B{l.lead_land}: ccf {l.ccf:.3f}, lag {l.lag_um:+.1f} µm, "
              f"CMS {f.get('cms', '-')}, matches {f.get('matches', '-')}, mismatches {f.get('mismatches', '-')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import main as _main

    return _main(["compare", *(argv or [])])
