"""Comparisons: areal registration, Congruent Matching Cells, scores.

Masked normalised cross-correlation through FFTs (Padfield 2012) over the
full circle of rotations, coarse to fine, then the NIST Congruent Matching
Cells count (Song 2013; Tong et al. 2015) in both directions.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
