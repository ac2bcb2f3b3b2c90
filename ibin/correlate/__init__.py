"""Comparisons: areal registration, Congruent Matching Cells, scores.

Masked normalised cross-correlation through FFTs (Padfield 2012) over the
full circle of rotations, coarse to fine, then the NIST Congruent Matching
Cells count (Song 2013; Tong et al. 2015) in both directions.

Bullets: land-to-land cross-correlation maximum over lag (Numba, coarse to
fine), striae features (CMS, matches, D), and the bullet-to-bullet phase by
cyclic land alignment (sequence average maximum; Hare et al. 2017,
Vanderplas et al. 2020).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
