"""What a database holds: exhibit counts, index type, sizes, software versions."""

from __future__ import annotations

import argparse
import json

HELP = "describe a database"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB")
    p.add_argument("--format", choices=["text", "json"], default="text")


def versions() -> dict[str, str]:
    import platform

    import numpy
    import scipy

    from .. import __version__

    out = {"ibin": __version__, "python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__}
    for mod in ("faiss", "numba", "cv2", "x3pio"):
        try:
            m = __import__(mod)
            out[mod if mod != "cv2" else "opencv"] = getattr(m, "__version__", "?")
        except ImportError:  # pragma: no cover - all are dependencies
            out[mod] = "missing"
    return out


def run(args: argparse.Namespace) -> int:
    from ..engine import open_database, search_plan

    db = open_database(args.db, readonly=True)
    try:
        plan = search_plan(db)  # loads the indexes, so their type is reported
        info = db.info()
        for space, how in plan.items():
            info["spaces"][space]["search"] = how
        info["reviews"] = db.reviews.summary()
    finally:
        db.close()
    info["versions"] = versions()
    if args.format == "json":
        print(json.dumps(info, indent=2))
        return 0
    b = info["bytes"]
    print(f"database   {info['path']} (format {info['format_version']})")
    print(f"exhibits   {info['exhibits']}" + "".join(f", {k}: {v}" for k, v in info["by_kind"].items()))
    for space, s in info["spaces"].items():
        loaded = ""
        if s.get("file_version") is not None:
            loaded = f"; file version {s['file_version']}" + (", vectors read in place" if s.get("read_in_place") else "")
        print(f"index      {space}: {s['vectors']} vectors of {s['dim']} values, {s['index']}{loaded}")
        if s.get("search"):
            print(f"           searched: {s['search']}")
    print(f"size       catalog {b['catalog'] / 1024:.0f} KiB, store {b['store'] / 1024:.0f} KiB, "
          f"index {b['index'] / 1024:.0f} KiB; {b['per_exhibit'] / 1024:.1f} KiB per exhibit")
    r = info["reviews"]
    print(f"reviews    {r['reviewed_pairs']} lead{'s' * (r['reviewed_pairs'] != 1)} reviewed: {r['hit']} hit, "
          f"{r['no hit']} no hit; {r['hits_linking_cases']} hit{'s' * (r['hits_linking_cases'] != 1)} linking "
          "two cases (ibin hits)")
    print("versions   " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import main as _main

    return _main(["info", *(argv or [])])
