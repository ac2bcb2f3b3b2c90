"""Show or correct an exhibit's metadata; every change is recorded in the audit log.

With KEY=VALUE arguments or --unset KEY the values are set or removed in one
transaction with an audit entry that keeps the old and new values, the user
and the --reason. Without them, the exhibit's metadata are printed.
"""

from __future__ import annotations

import argparse
import json

HELP = "show or correct an exhibit's metadata (logged)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="database directory")
    p.add_argument("id", metavar="ID", help="exhibit id")
    p.add_argument("pairs", metavar="KEY=VALUE", nargs="*", help="metadata to set")
    p.add_argument("--unset", action="append", metavar="KEY", default=[], help="metadata to remove (repeatable)")
    p.add_argument("--reason", help="why, for the audit log")
    p.add_argument("--user", help="who, for the audit log (default: $IBIN_USER or the login name)")
    p.add_argument("--format", choices=["text", "json"], default="text")


def run(args: argparse.Namespace) -> int:
    from ..engine import open_database
    from ..index import validate_metadata
    from ._common import parse_pairs

    values = validate_metadata(parse_pairs(args.pairs, "metadata"))
    change = bool(values or args.unset)
    db = open_database(args.db, readonly=not change)
    try:
        md = db.set_metadata(args.id, values, args.unset, user=args.user, reason=args.reason) if change \
            else db.get(args.id).metadata
    finally:
        db.close()
    if args.format == "json":
        print(json.dumps({"id": args.id, "metadata": md}, indent=2, ensure_ascii=False))
    else:
        for k, v in sorted(md.items()):
            print(f"{k}={v}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import main as _main

    return _main(["meta", *(argv or [])])
