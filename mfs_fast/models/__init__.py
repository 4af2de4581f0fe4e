"""PyTorch reference models: the single source of truth every fast path is checked against."""

from .bundle import FaceSwapModels
from .identity_weights import IdentityWeights, PointwiseModulation, modulate_demodulate
from .idn import IDN, idn_layer_shapes
from .iin import IIN

__all__ = [
    "FaceSwapModels",
    "IDN",
    "IIN",
    "IdentityWeights",
    "PointwiseModulation",
    "idn_layer_shapes",
    "modulate_demodulate",
]
