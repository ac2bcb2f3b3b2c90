"""Helpers shared by the commands: KEY=VALUE parsing, progress, output."""

from __future__ import annotations

import sys
import time


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
    """A one-line progress bar on stderr, shown only on a terminal."""

    def __init__(self, total: int, label: str, stream=None):
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        frac = done / self.total
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        rate = done / max(time.monotonic() - self.start, 1e-9)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {rate:.1f}/s {note[:40]:<40}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
