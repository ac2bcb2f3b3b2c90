from ._cartridge import FEATURES_VERSION, CartridgeParams, PreparedCartridge, prepare_cartridge
from ._filters import gaussian_bandpass, gaussian_lowpass, level_polynomial, resample, robust_std
from ._roi import BreechFaceROI, Circle, find_breech_face
from ._spectrum import polar_spectrum, rotation_hypotheses, spectrum_descriptor
