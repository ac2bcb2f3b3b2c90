"""Named points on the database's write path, for fault-injection tests.

The write path calls :func:`point` at every step after which a crash would
leave a different state on disk (a record half-written, fsynced, a catalog
transaction begun, committed, an index file renamed in ...). In normal use
no hook is installed and a point costs one global lookup. A test installs a
hook with :func:`set_hook` that kills the process (``SIGKILL``) at a chosen
point, then checks that the database still opens, passes ``ibin check`` and
holds every exhibit whose ingest returned.

The points, in the order an ingest meets them::

    create.built          new database built in a temporary folder, not yet renamed in
    store.open            segment file opened for appending
    store.padded          alignment padding written
    store.chunk           one chunk (64 KiB) of a record written (several per record)
    store.written         whole record written, not yet fsynced
    store.synced          record fsynced (file and folder)
    catalog.begin         write transaction begun (BEGIN IMMEDIATE)
    catalog.rows          catalog rows and audit entry inserted, not committed
    catalog.commit        about to COMMIT
    catalog.committed     committed (the exhibit is on file)
    index.tmp             index written to a temporary file and fsynced
    index.renamed         index file renamed in, folder not yet fsynced
"""

from __future__ import annotations

from typing import Callable

__all__ = ["point", "set_hook", "POINTS"]

POINTS = (
    "create.built", "store.open", "store.padded", "store.chunk", "store.written", "store.synced",
    "catalog.begin", "catalog.rows", "catalog.commit", "catalog.committed",
    "index.tmp", "index.renamed",
)

_hook: Callable[[str], None] | None = None


def point(name: str) -> None:
    """Mark that the write path reached ``name`` (calls the installed hook, if any)."""
    if _hook is not None:
        _hook(name)


def set_hook(hook: Callable[[str], None] | None) -> None:
    """Install ``hook(name)`` to be called at every point (``None`` removes it)."""
    global _hook
    _hook = hook
