"""The database: SQLite catalog, append-only feature store and FAISS indexes.

A database is a directory; see :class:`Database`. This package stores named
arrays, attributes and descriptor vectors; it knows nothing of how they
were made.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
