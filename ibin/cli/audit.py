"""Show a database's audit log: every ingest, deletion, metadata edit and search.

Entries are printed oldest first: sequence number, time (UTC), user, event
and what it concerned. --head prints only the number of entries and the hash
of the newest one: note it in the case file, and a later log that does not
extend it has been rewritten. ``ibin check`` verifies the whole chain.
"""

from __future__ import annotations

import argparse
import json

HELP = "show the audit log"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="database directory")
    p.add_argument("--exhibit", metavar="ID", help="only entries about this exhibit")
    p.add_argument("--event", metavar="NAME", help="only this event (ingest, delete, metadata, search, ...)")
    p.add_argument("--last", type=int, metavar="N", help="only the newest N entries")
    p.add_argument("--head", action="store_true", help="print the number of entries and the newest hash only")
    p.add_argument("--format", choices=["text", "json"], default="text", help="json: JSON Lines, one entry a line")


def _summary(e) -> str:
    d = e.details
    if e.event in ("ingest", "delete"):
        extra = f" from {d.get('source_name')}" if e.event == "ingest" else ""
        why = f" ({d['reason']})" if d.get("reason") else ""
        return f"{d.get('id')}{extra}{why}"
    if e.event == "metadata":
        parts = [f"{k}={v}" for k, v in d.get("set", {}).items()] + [f"-{k}" for k in d.get("unset", [])]
        why = f" ({d['reason']})" if d.get("reason") else ""
        return f"{d.get('id')}: {' '.join(parts)}{why}"
    if e.event == "search":
        q = d.get("query", {})
        leads = ", ".join(str(lead.get("id")) for lead in d.get("leads", [])[:5])
        more = "..." if len(d.get("leads", [])) > 5 else ""
        return f"{q.get('exhibit') or q.get('id') or q.get('file')} -> {leads}{more}"
    return json.dumps(d, ensure_ascii=False, sort_keys=True)[:160]


def run(args: argparse.Namespace) -> int:
    from ..engine import open_database

    db = open_database(args.db, readonly=True)
    try:
        if args.head:
            n, head = db.audit_head()
            print(f"{n} {head}")
            return 0
        entries = db.audit_log(event=args.event, exhibit=args.exhibit, last=args.last)
    finally:
        db.close()
    for e in entries:
        if args.format == "json":
            print(json.dumps(e.to_dict(), ensure_ascii=False, sort_keys=True))
        else:
            print(f"{e.seq:>6}  {e.at[:19]}Z  {e.user:<12}  {e.event:<9}  {_summary(e)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from . import main as _main

    return _main(["audit", *(argv or [])])
