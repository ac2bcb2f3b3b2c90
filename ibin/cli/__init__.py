"""The ``ibin`` command line: each command is a module with ``add_arguments`` and ``run``.

Commands only parse arguments, call the library and print; the work is done
in :mod:`ibin.engine`. Exit codes: 0 success, 1 some inputs failed (the
others were processed), 2 an error stopped the command.
"""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["main"]

COMMANDS = ("ingest", "search", "compare", "info", "check", "reindex", "delete", "meta", "audit", "report", "serve", "hits", "demo")


def _get_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="ibin",
        description="Ballistic image correlation: put breech-face and bullet scans on file and get ranked lead lists.",
    )
    parser.add_argument("--version", action="version", version=f"ibin {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        mod = import_module(f".{name}", __name__)
        p = sub.add_parser(name, help=mod.HELP, description=mod.__doc__)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``ibin`` command line; returns the exit code."""
    from ..errors import IbinError

    parser = _get_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse gives an optional list of positionals (search's FILE...)
        # nothing when options come first; take FILEs found after the options
        target = getattr(args, "_trailing_files", None)
        if target and not any(x.startswith("-") and x != "-" for x in extra):
            getattr(args, target).extend(extra)
        else:
            parser.error("unrecognized arguments: " + " ".join(extra))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    from .._alloc import keep_freed_memory

    keep_freed_memory()  # this process is ibin's: arrays freed are kept for the next (see ibin._alloc)
    try:
        return int(args._run(args))
    except IbinError as e:
        print(f"ibin {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"ibin {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ibin {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # a file or folder the command needs is not usable
        print(f"ibin {args.command}: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
