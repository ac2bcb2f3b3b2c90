from ._cartridge import FEATURES_VERSION, CartridgeParams, PreparedCartridge, dequantize, prepare_cartridge, quantize
from ._filters import block_mean, gaussian_bandpass, gaussian_lowpass, level_polynomial, resample, robust_std
from ._roi import BreechFaceROI, Circle, find_breech_face
from ._spectrum import polar_spectrum, rotation_hypotheses, spectrum_descriptor
from ._polar import PolarParams, anchors_of, polar_signature, rotate_signature, rotation_max
