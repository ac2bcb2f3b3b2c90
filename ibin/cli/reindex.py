"""Rebuild a database's index files from its catalog.

The FAISS index files are a cache of the descriptor vectors in the catalog;
searches catch them up and rebuild a damaged one on their own. This rewrites
every index file from scratch (dropping entries of deleted exhibits and
temporary files of interrupted saves), atomically, and records it in the
audit log. Safe while others ingest and search.
"""

from __future__ import annotations

import argparse

HELP = "rebuild the index files from the catalog"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="database directory")
    p.add_argument("--user", help="who does it, for the audit log (default: $IBIN_USER or the login name)")


def run(args: argparse.Namespace) -> int:
    from ..engine import KINDS, fit_indexes, open_database

    db = open_database(args.db)
    try:
        counts = db.reindex(user=args.user)
        kinds = {}
        for k in KINDS:
            kinds.update(fit_indexes(db, k))  # the kind of index each space's size calls for
    finally:
        db.close()
    for space, n in counts.items():
        print(f"{space}: {n} vectors indexed" + (f" ({kinds[space]})" if space in kinds else ""))
    if not counts:
        print(f"{args.db}: no vectors on file; nothing to index")
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import main as _main

    return _main(["reindex", *(argv or [])])
