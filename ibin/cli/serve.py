"""Start the review page: browse exhibits, flip through their leads with pictures, record dispositions.

The page listens on the loopback interface (127.0.0.1) unless --host says
otherwise; open the printed address in a browser on the same machine. It
has no accounts: anyone who can reach the port can record dispositions, so
bind it to another interface only on a trusted network. Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys

HELP = "start the local review page for a database"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="database directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    p.add_argument("--user", metavar="NAME", help="default examiner name (default: $IBIN_USER or the login name)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="leads per list (default 10)")
    p.add_argument("--candidates", type=int, default=100, metavar="K",
                   help="exhibits the index hands to the full correlation (default 100)")


def run(args: argparse.Namespace) -> int:
    from ..report import ReviewServer

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0-65535, got {args.port}")
    try:
        srv = ReviewServer(args.db, host=args.host, port=args.port, user=args.user, top=args.top,
                           candidates=args.candidates)
    except OSError as e:
        raise ValueError(str(e)) from None
    if not srv.loopback:
        print(f"ibin serve: warning: listening on {args.host}, reachable from other machines; "
              "the page has no accounts", file=sys.stderr)
    print(f"ibin review page for {srv.db.path} ({srv.db.count()} exhibits): {srv.url}", flush=True)
    print("press Ctrl-C to stop", flush=True)
    previous = signal.signal(signal.SIGTERM, _stop)  # `kill` stops it as cleanly as Ctrl-C
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        srv.shutdown()
    return 0


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from . import main as _main

    return _main(["serve", *(argv or [])])
