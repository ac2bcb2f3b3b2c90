"""Lead lists: a new scan against the database, or exhibits on file against the rest.

With FILE the scan is compared with the exhibits on file and is not added.
With --id or --all the exhibits already on file are re-correlated against
all the others (never listing an exhibit as its own lead); with
--format json this writes JSON Lines, one lead list per query. Every lead
list is recorded in the database's audit log (query, leads, --user).
"""

from __future__ import annotations

import argparse
import sys

HELP = "rank the exhibits on file against a scan"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="database directory")
    p.add_argument("file", metavar="FILE", nargs="?", help="scan file to search with (not added)")
    p.add_argument("--id", dest="ids", action="append", metavar="ID", help="search with an exhibit on file (repeatable)")
    p.add_argument("--all", action="store_true", help="search with every exhibit on file")
    p.add_argument("--kind", default="cartridge", choices=["cartridge"])
    p.add_argument("--top", type=int, default=10, metavar="N", help="leads per list (default 10)")
    p.add_argument("--candidates", type=int, default=300, metavar="K",
                   help="exhibits the index hands to the coarse screen (default 300)")
    p.add_argument("--verify", type=int, default=20, metavar="V",
                   help="exhibits that get the full comparison with congruent matching cells (default 20, at least --top)")
    p.add_argument("--filter", action="append", metavar="KEY=VALUE", help="only exhibits with this metadata")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("--pixel-um", type=float, metavar="X", help="pixel size in µm for an image or .npy query")
    p.add_argument("--user", help="who searches, for the audit log (default: $IBIN_USER or the login name)")


def run(args: argparse.Namespace) -> int:
    from ..engine import SearchParams, open_database, search, search_exhibits
    from ._common import Progress, parse_pairs

    modes = sum([args.file is not None, bool(args.ids), args.all])
    if modes != 1:
        raise ValueError("give exactly one of FILE, --id ID or --all")
    params = SearchParams(top=args.top, candidates=args.candidates, verify=args.verify,
                          filters=parse_pairs(args.filter, "--filter"))
    db = open_database(args.db)
    try:
        if args.file is not None:
            lists = [search(db, args.file, kind=args.kind, params=params, pixel_um=args.pixel_um, user=args.user)]
        else:
            ids = None if args.all else args.ids
            n = db.count(kind=args.kind) if ids is None else len(ids)
            bar = Progress(n, "search")
            lists = []
            for i, ll in enumerate(search_exhibits(db, ids, kind=args.kind, params=params, user=args.user)):
                lists.append(ll)
                bar.update(i + 1, ll.query_id)
                if args.format == "json":  # stream JSON Lines as they come
                    sys.stdout.write(ll.to_json() + "\n")
                    sys.stdout.flush()
            bar.close()
            if args.format == "json":
                return 0
    finally:
        db.close()
    if args.format == "json":
        for ll in lists:
            sys.stdout.write(ll.to_json(indent=None if len(lists) > 1 else 2) + "\n")
    elif args.format == "csv":
        for i, ll in enumerate(lists):
            sys.stdout.write(ll.to_csv(header=i == 0))
    else:
        print("\n\n".join(ll.to_table() for ll in lists))
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import main as _main

    return _main(["search", *(argv or [])])
