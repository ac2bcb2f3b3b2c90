"""ibin: an open ballistic image correlation engine.

Scans of fired cartridge cases go in; for each exhibit, a ranked lead list of
the exhibits on file that likely came from the same firearm comes out.

Pipeline (one direction): ``scan`` (load, validate, units) -> ``features``
(preparation, signatures) -> ``index`` (catalog, feature store, FAISS
candidates) / ``correlate`` (registration, congruent matching cells) ->
``leads`` (ranked lead lists). ``engine`` wires the stages; ``cli`` is the
command line.

Importing ibin is cheap: subpackages, Numba kernels and FAISS load on first
use.
"""

import lazy_loader as _lazy

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
