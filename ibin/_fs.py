"""Durable file writes shared by the catalog, the feature store, the index files and lead-list logs."""

from __future__ import annotations

import os
from pathlib import Path


def write_all(fd: int, data) -> None:
    """Write all of ``data`` to a file descriptor (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new or renamed file) durable; best effort where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
