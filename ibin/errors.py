"""Exceptions raised by ibin.

Every error a user can cause derives from :class:`IbinError`, so a pipeline can
catch one type. Errors about an input file name the file and say what is wrong
with it; the CLI prints the message and exits non-zero.
"""

from __future__ import annotations

import os

__all__ = ["IbinError", "ScanError", "DatabaseError", "ExhibitNotFoundError", "DuplicateExhibitError"]


class IbinError(Exception):
    """Base class of every error raised deliberately by ibin."""


class ScanError(IbinError, ValueError):
    """A scan file (or an in-memory scan) cannot be used.

    Parameters
    ----------
    source : str or os.PathLike or None
        The file the problem is about (``None`` for an in-memory array).
    problem : str
        What is wrong, phrased so the user knows what to fix.
    """

    def __init__(self, source: str | os.PathLike | None, problem: str):
        self.source = None if source is None else os.fspath(source)
        self.problem = problem
        where = self.source if self.source is not None else "<in-memory scan>"
        super().__init__(f"{where}: {problem}")


class DatabaseError(IbinError):
    """The database directory is missing, damaged, locked or incompatible."""


class ExhibitNotFoundError(DatabaseError, KeyError):
    """No exhibit with the requested id is on file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "exhibit not found"


class DuplicateExhibitError(DatabaseError):
    """An exhibit id is already used by a different source file."""
