"""Preparation and signatures: from a scan to what the index and the re-rank use.

Cartridge cases: levelling, breech-face region (primer outline, firing-pin
impression), outlier removal, resampling to a canonical grid, Gaussian
band-pass (ISO 16610-21), and the polar power spectrum whose harmonics form
the rotation-invariant index descriptor (Numba kernels).

Bullets: per land-engraved area, the striae's axis, a stable crosscut band
(Hare et al. 2017), groove removal at both shoulders, curvature removal and
a Gaussian band-pass, giving a 1-D land signature in µm on a canonical
spacing, and a shift-invariant spectral descriptor per land and per bullet.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
