"""Preparation and signatures: from a scan to what the index and the re-rank use.

Cartridge cases: levelling, breech-face region (primer outline, firing-pin
impression), outlier removal, resampling to a canonical grid, Gaussian
band-pass (ISO 16610-21), and the polar power spectrum whose harmonics form
the rotation-invariant index descriptor (Numba kernels).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
