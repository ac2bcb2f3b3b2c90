"""Put scan files on file in a database (created if missing), one exhibit per file.

Every file is read, validated and prepared before anything is written. A
file that cannot be read or prepared is reported (on stderr, naming the file
and the problem) and skipped; the others go in, and the exit code is 1. A
file already on file (same SHA-256) is not added twice. When every file is
refused, the database is not touched (not even created). Each exhibit is
recorded in the database's audit log under --user (default: $IBIN_USER or
the login name). Two ingests into one database at once are safe: one waits
for the other's short write, saying so on stderr if the wait is long.

With --kind bullet the files are the lands of ONE bullet, in land order
(write - for a land that was not scanned), and --id names the bullet
(default: the part of the files' names they share).
"""

from __future__ import annotations

import argparse
import sys

HELP = "add scans to a database"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="database directory (created if missing)")
    p.add_argument("files", metavar="FILE", nargs="+",
                   help="scan files (.x3p, .png/.tif, .npy); for a bullet its land files in land order, - for a missing land")
    p.add_argument("--kind", default="cartridge", choices=["cartridge", "bullet"], help="exhibit kind (default: cartridge)")
    p.add_argument("--id", dest="ids", action="append", metavar="ID",
                   help="exhibit id (one per file, in order; default: the file stem); for a bullet, the bullet's id")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE",
                   help="metadata for every exhibit (caliber, agency, case, make, model, date...)")
    p.add_argument("--pixel-um", type=float, metavar="X", help="pixel size in µm for images and .npy files")
    p.add_argument("--user", help="who ingests (default: $IBIN_USER or the login name)")


def run(args: argparse.Namespace) -> int:
    from ..engine import ingest
    from ._common import Progress, parse_pairs

    meta = parse_pairs(args.meta, "--meta")
    if args.kind == "bullet":
        if args.ids is not None and len(args.ids) != 1:
            raise ValueError(f"{len(args.ids)} --id given for one bullet; give its id once (or none)")
        sources: list = [[None if f.strip() == "-" else f for f in args.files]]
    else:
        if args.ids is not None and len(args.ids) != len(args.files):
            raise ValueError(f"{len(args.ids)} --id given for {len(args.files)} files; give one per file or none")
        sources = args.files

    def on_wait(seconds: float) -> None:
        print(f"ibin ingest: waiting for another process writing to {args.db} ...", file=sys.stderr, flush=True)

    bar = Progress(len(sources), "ingest")
    try:
        def progress(done, total, res):
            bar.update(done, res.id or "")

        # the database is opened (or created) only once a file is ready to go in:
        # a batch whose every file is refused leaves it exactly as it was
        report = ingest(args.db, sources, kind=args.kind, ids=args.ids, metadata=meta,
                        pixel_um=args.pixel_um, user=args.user, progress=progress, on_wait=on_wait)
    finally:
        bar.close()
    for r in report.results:
        if r.status == "failed":
            print(f"ibin ingest: {r.message}", file=sys.stderr)
        elif r.status == "duplicate":
            print(f"{r.file}: {r.message}")
    print(f"{args.db}: {report.summary()}")
    return 1 if report.failed else 0


def main(argv: list[str] | None = None) -> int:
    from . import main as _main

    return _main(["ingest", *(argv or [])])
