"""Remove exhibits from a database, recording who, when and why in the audit log.

Each exhibit's catalog row, metadata and descriptor vectors go in one
transaction with its audit entry, so the database stays consistent whatever
happens. The prepared feature record stays in the append-only store,
unreferenced; the audit entry keeps its SHA-256.
"""

from __future__ import annotations

import argparse

HELP = "remove exhibits (logged)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="database directory")
    p.add_argument("ids", metavar="ID", nargs="+", help="exhibit ids")
    p.add_argument("--reason", help="why, for the audit log")
    p.add_argument("--user", help="who, for the audit log (default: $IBIN_USER or the login name)")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..engine import open_database
    from ..errors import ExhibitNotFoundError

    db = open_database(args.db)
    failed = 0
    try:
        for ex in args.ids:
            try:
                db.delete(ex, user=args.user, reason=args.reason)
            except ExhibitNotFoundError as e:
                print(f"ibin delete: {e}", file=sys.stderr)
                failed += 1
                continue
            print(f"{ex}: deleted")
    finally:
        db.close()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    from . import main as _main

    return _main(["delete", *(argv or [])])
