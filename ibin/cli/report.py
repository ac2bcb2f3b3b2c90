"""Write a lead-list report with pictures: one self-contained HTML file (and optionally a PDF).

With FILE the scan is searched against the exhibits on file (it is not
added); with --id an exhibit on file is searched against all the others.
For each of the top leads the report shows the query and the lead side by
side after alignment with the congruent matching cells and their CCF, an
overlay, the correlation around the peak, the correlation against rotation
and where each cell matched. The HTML embeds its images and needs no network.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ._common import add_search_arguments

HELP = "write an HTML (and PDF) report of a lead list with pictures"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="database directory")
    p.add_argument("files", metavar="FILE", nargs="*",
                   help="scan file to search with (not added); for --kind bullet its land files in land order")
    p.add_argument("--id", dest="exhibit_id", metavar="ID", help="search with an exhibit on file")
    p.add_argument("-o", "--output", metavar="HTML", help="HTML file to write (default: ./<query>-report.html)")
    p.add_argument("--pdf", metavar="PDF", help="also write the report as a PDF")
    p.add_argument("--kind", default=None, choices=["cartridge", "bullet"],
                   help="exhibit kind (default: the exhibit's own kind for --id, cartridge for FILE)")
    add_search_arguments(p, top_help="leads in the list (default 10)")
    p.add_argument("--pictures", type=int, default=3, metavar="K",
                   help="leads drawn, from the top (default 3; the review page draws any lead on demand)")
    p.add_argument("--pixel-um", type=float, metavar="X", help="pixel size in µm for an image or .npy query")
    p.set_defaults(_trailing_files="files")


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("._") or "query"


def run(args: argparse.Namespace) -> int:
    from ..engine import open_database
    from ..report import build_report, write_report
    from ._common import search_params

    if bool(args.files) == (args.exhibit_id is not None):
        raise ValueError("give exactly one of FILE and --id ID")
    if args.files and args.kind != "bullet" and len(args.files) > 1:
        raise ValueError(f"{len(args.files)} files given; report on one scan (or --kind bullet for a bullet's lands)")
    params = search_params(args, one_off=True)  # one lead list, then its pictures
    db = open_database(args.db, readonly=not args.files)
    try:
        kind = args.kind or (db.get(args.exhibit_id).kind if args.exhibit_id else "cartridge")
        scan = None
        if args.files:
            scan = [None if f.strip() == "-" else f for f in args.files] if kind == "bullet" else args.files[0]
        rep = build_report(db, exhibit_id=args.exhibit_id, scan=scan, kind=kind, params=params,
                           pictures=args.pictures, pixel_um=args.pixel_um)
    finally:
        db.close()
    out = Path(args.output) if args.output else Path(f"{_safe_name(rep.leads.query_id)}-report.html")
    written = write_report(rep, out, pdf_path=args.pdf)
    drawn = sum(p.png is not None for p in rep.pictures)
    print(f"{written['html']}: lead list of {rep.leads.query_id} ({len(rep.leads)} leads, {drawn} with pictures), "
          f"{written['html_bytes'] / 1e6:.2f} MB; search {rep.timing_ms['search'] / 1e3:.1f} s, "
          f"pictures {rep.timing_ms['pictures'] / 1e3:.1f} s")
    if written["pdf"]:
        print(f"{written['pdf']}: {written['pdf_bytes'] / 1e6:.2f} MB")
    for p in rep.pictures:
        if p.note:
            print(f"  lead {p.lead.rank} {p.lead.id}: {p.note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import main as _main

    return _main(["report", *(argv or [])])
