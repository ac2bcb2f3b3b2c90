"""Lead lists: a new scan against the database, or exhibits on file against the rest.

With FILE the scan is compared with the exhibits on file and is not added.
With --id or --all the exhibits already on file are re-correlated against
all the others (never listing an exhibit as its own lead); with
--format json this writes JSON Lines, one lead list per query. Every lead
list is recorded in the database's audit log (query, leads, --user).

With --kind bullet the FILEs are the lands of one bullet in land order (-
for a land not scanned); a single FILE is a fragment (one land), whose
lead list holds the bullets with the best-matching lands. Each lead gives
the phase (land i of the query pairs with land i + phase of the lead) and
the land pairs with their correlation and lag. --id finds each exhibit's
kind; --all without --kind searches every kind on file.

With --output FILE (--id/--all) the lead lists are appended to FILE as JSON
Lines, each synced to disk as it arrives. Run again with the same
FILE, an interrupted sweep resumes: the queries already in FILE are skipped
(a last line cut off mid-write is dropped and redone). Progress goes to
stderr: a bar on a terminal, otherwise a line a minute.
"""

from __future__ import annotations

import argparse
import sys

from ._common import add_search_arguments

HELP = "rank the exhibits on file against a scan"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="database directory")
    p.add_argument("files", metavar="FILE", nargs="*",
                   help="scan file to search with (not added); for a bullet its land files in land order")
    p.add_argument("--id", dest="ids", action="append", metavar="ID", help="search with an exhibit on file (repeatable)")
    p.add_argument("--all", action="store_true", help="search with every exhibit on file")
    p.add_argument("--kind", default=None, choices=["cartridge", "bullet"],
                   help="exhibit kind (default: cartridge for FILE, the exhibit's own kind for --id, every kind for --all)")
    add_search_arguments(p)
    p.add_argument("--format", choices=["table", "json", "csv"], default=None, help="output on stdout (default table)")
    p.add_argument("--output", metavar="FILE",
                   help="--id/--all: append the lead lists to FILE as JSON Lines, resuming an interrupted run on FILE")
    p.add_argument("--pixel-um", type=float, metavar="X", help="pixel size in µm for an image or .npy query")
    p.add_argument("--user", help="who searches, for the audit log (default: $IBIN_USER or the login name)")
    p.add_argument("--processes", type=int, default=None, metavar="P",
                   help="worker processes for --id/--all (default: every core when each query's lead list "
                        "is a small part of the database, else 1, which compares each pair once)")
    p.set_defaults(_trailing_files="files")


def run(args: argparse.Namespace) -> int:
    from ..engine import KINDS, open_database, search, search_exhibits
    from ._common import Progress, search_params

    modes = sum([bool(args.files), bool(args.ids), args.all])
    if modes != 1:
        raise ValueError("give exactly one of FILE, --id ID or --all")
    if args.files and args.kind != "bullet" and len(args.files) > 1:
        raise ValueError(f"{len(args.files)} files given; search with one scan (or --kind bullet for a bullet's lands)")
    if args.output and not (args.ids or args.all):
        raise ValueError("--output is for --id and --all (a FILE's lead list goes to stdout)")
    if args.output and args.format:
        raise ValueError("--output writes JSON Lines to its file; --format is for stdout")
    args.format = args.format or "table"
    params = search_params(args, one_off=bool(args.files) or len(args.ids or ()) == 1)  # this process's only lead list
    db = open_database(args.db)
    log = None
    try:
        if args.files:
            if args.kind == "bullet":
                query = [None if f.strip() == "-" else f for f in args.files]
                lists = [search(db, query, kind="bullet", params=params, pixel_um=args.pixel_um, user=args.user)]
            else:
                lists = [search(db, args.files[0], kind=args.kind or "cartridge", params=params,
                                pixel_um=args.pixel_um, user=args.user)]
        else:
            if args.all:
                kinds = [args.kind] if args.kind else [k for k in KINDS if db.count(kind=k)] or ["cartridge"]
                batches = [(k, None) for k in kinds]
            else:
                batches = []
                for ex_id in args.ids:  # each exhibit with its own kind, in the order given
                    k = args.kind or db.get(ex_id).kind
                    if batches and batches[-1][0] == k:
                        batches[-1][1].append(ex_id)
                    else:
                        batches.append((k, [ex_id]))
            skipped = 0
            if args.output:
                from ..leads import LeadListLog

                log = LeadListLog(args.output, str(db.path))
                if log.dropped_partial:
                    print(f"ibin search: {args.output}: dropped its last line, cut off mid-write; that query is redone",
                          file=sys.stderr)
                if log.done:
                    todo = []
                    for k, ids in batches:
                        want = [r.id for r in db.list(kind=k)] if ids is None else ids
                        left = [i for i in want if (k, i) not in log.done]
                        skipped += len(want) - len(left)
                        if left:
                            todo.append((k, left))
                    batches = todo
            n = sum(db.count(kind=k) if ids is None else len(ids) for k, ids in batches)
            bar = Progress(n, "search")
            lists = []
            done = 0
            for k, ids in batches:
                procs = args.processes
                if procs is None:
                    import os

                    big = db.count(kind=k) > 4 * (params.candidates + params.n_verify)
                    procs = (os.cpu_count() or 1) if big and k == "cartridge" else 1
                for ll in search_exhibits(db, ids, kind=k, params=params, user=args.user, processes=procs):
                    done += 1
                    bar.update(done, ll.query_id)
                    if log is not None:  # on disk as it arrives
                        log.append(ll)
                    elif args.format == "json":  # stream JSON Lines as they come
                        sys.stdout.write(ll.to_json() + "\n")
                        sys.stdout.flush()
                    else:
                        lists.append(ll)
            bar.close()
            if log is not None:
                print(f"{done} lead lists written to {args.output}"
                      + (f" ({skipped} already there, skipped)" if skipped else ""))
                return 0
            if args.format == "json":
                return 0
    finally:
        if log is not None:
            log.close()
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
