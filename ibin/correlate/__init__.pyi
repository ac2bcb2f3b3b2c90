from ._areal import Alignment, AreaComparison, ComparisonParams, compare_prepared
from ._cmc import CellResult, CMCParams, CMCResult, congruent_matching_cells
from ._ncc import FixedSpectra, masked_ncc, rotate_stack
from ._register import Pyramid, Registration, RegistrationParams, pearson_at, register
from ._screen import QueryScreen, ScreenParams
