"""Verify that a database's catalog, feature store, index files and audit log agree.

Reads every exhibit's feature record and checks its SHA-256, checks every
index file against its sidecar and the catalog, and verifies the audit log's
hash chain and that replaying it gives the catalog. Damage is reported
precisely (which exhibit, which file and byte offset, what is wrong) and the
exit code is 1; notes (harmless states, such as bytes left by an interrupted
ingest) do not fail the check; a catalog that cannot be opened at all exits 2.
Never writes; safe while others ingest.
"""

from __future__ import annotations

import argparse
import json

HELP = "verify a database (catalog, feature store, index, audit log)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="database directory")
    p.add_argument("--quick", action="store_true",
                   help="check the catalog's references to feature records without reading them")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--quiet", action="store_true", help="print damage and the summary only, not notes")


def run(args: argparse.Namespace) -> int:
    from ..engine import open_database

    db = open_database(args.db, readonly=True)
    try:
        rep = db.check(records=not args.quick)
    finally:
        db.close()
    if args.format == "json":
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        for f in rep.damage:
            print(f)
        if not args.quiet:
            for f in rep.notes:
                print(f)
        if rep.audit_head:
            print(f"audit log head: {rep.audit_head}")
        print(rep.summary())
    return 0 if rep.ok else 1


def main(argv: list[str] | None = None) -> int:
    from . import main as _main

    return _main(["check", *(argv or [])])
