"""Confirmed hits: pairs of exhibits an examiner marked as fired by the same firearm, and the cases they link.

A hit is recorded on the review page (``ibin serve``) or with the library
(``ibin.engine.record_disposition``). Each exhibit's case is its value of
the metadata key given by --case-key (``ibin ingest --meta case=...``).
Linked groups join exhibits through hits, transitively.
"""

from __future__ import annotations

import argparse
import json

HELP = "list confirmed hits and the cases they link"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="database directory")
    p.add_argument("--case-key", default="case", metavar="KEY",
                   help="metadata key holding an exhibit's case number (default: case)")
    p.add_argument("--format", choices=["table", "json"], default="table")


def run(args: argparse.Namespace) -> int:
    from ..engine import open_database

    db = open_database(args.db, readonly=True)
    try:
        hits = db.reviews.hits(case_key=args.case_key)
        groups = db.reviews.linked_groups(case_key=args.case_key)
    finally:
        db.close()
    if args.format == "json":
        print(json.dumps({"hits": [h.to_dict() for h in hits], "linked_groups": groups,
                          "case_key": args.case_key}, indent=2, ensure_ascii=False))
        return 0
    if not hits:
        print(f"no confirmed hits in {args.db}")
        return 0
    rows = [(h.exhibit_a, h.case_a or "-", h.exhibit_b, h.case_b or "-",
             "links cases" if h.links_cases else ("same case" if h.case_a and h.case_a == h.case_b else "case unknown"),
             h.by or "-", (h.at or "")[:16].replace("T", " "), h.comment) for h in hits]
    cols = ("exhibit", args.case_key, "exhibit", args.case_key, "", "by", "at", "comment")
    w = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    print(f"{len(hits)} confirmed hit{'s' * (len(hits) != 1)} in {args.db}")
    print("  ".join(c.ljust(n) for c, n in zip(cols, w)).rstrip())
    print("  ".join("-" * n for n in w))
    for r in rows:
        print("  ".join(v.ljust(n) for v, n in zip(r, w)).rstrip())
    multi = [g for g in groups if len(g["exhibits"]) > 2 or len(g["cases"]) > 1]
    if multi:
        print("\nlinked groups")
        for g in multi:
            cases = ", ".join(g["cases"]) if g["cases"] else "no case numbers"
            print(f"  {', '.join(g['exhibits'])}  ({cases})")
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import main as _main

    return _main(["hits", *(argv or [])])
