"""Helpers shared by the commands: KEY=VALUE parsing, progress, output."""

from __future__ import annotations

import sys
import time


def add_search_arguments(p, *, top_help: str = "leads per list (default 10)") -> None:
    """The options of a search (``--top``, ``--candidates``, ``--verify``, ``--filter``), shared by the commands that search."""
    p.add_argument("--top", type=int, default=10, metavar="N", help=top_help)
    p.add_argument("--candidates", type=int, default=300, metavar="K",
                   help="exhibits the index hands to the coarse screen (default 300)")
    p.add_argument("--verify", type=int, default=20, metavar="V",
                   help="exhibits that get the full comparison with congruent matching cells (default 20, at least --top)")
    p.add_argument("--filter", action="append", metavar="KEY=VALUE", help="only exhibits with this metadata")


def search_params(args, *, one_off: bool = False):
    """:class:`ibin.SearchParams` from the options of :func:`add_search_arguments`.

    ``one_off``: the command makes one lead list and ends (no worker processes are started for it).
    """
    from ..engine import SearchParams

    return SearchParams(top=args.top, candidates=args.candidates, verify=args.verify,
                        filters=parse_pairs(args.filter, "--filter"), one_off=one_off)


def parse_pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """Parse ``KEY=VALUE`` arguments."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{what} must look like KEY=VALUE, got {item!r}")
        out[key] = value
    return out


class Progress:
    """Progress on stderr: a one-line bar on a terminal, else a plain line every ``every_s`` seconds.

    Hours-long runs (a sweep of a large database) are often left to run
    without a terminal; they still say how far they are and how long is left.
    """

    def __init__(self, total: int, label: str, stream=None, *, every_s: float = 60.0):
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every_s = every_s
        self.start = self.last = time.monotonic()

    def _left(self, done: int, elapsed: float) -> str:
        if done <= 0 or done >= self.total:
            return ""
        s = (self.total - done) * elapsed / done
        return f", {s / 3600:.1f} h left" if s >= 5400 else f", {s / 60:.0f} min left" if s >= 90 else f", {s:.0f} s left"

    def update(self, done: int, note: str = "") -> None:
        now = time.monotonic()
        elapsed = max(now - self.start, 1e-9)
        rate = done / elapsed
        if self.tty:
            width = 30
            frac = done / self.total
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {rate:.1f}/s {note[:40]:<40}")
            self.stream.flush()
        elif now - self.last >= self.every_s:
            self.last = now
            self.stream.write(f"{self.label}: {done}/{self.total} ({100 * done / self.total:.1f} %), "
                              f"{rate:.2f}/s{self._left(done, elapsed)}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
