"""mfs_fast: the fast, practical MobileFaceSwap.

Public API::

    swapper = mfs_fast.Swapper("source.jpg", weights="weights/")
    out = swapper.swap(frame)                       # BGR uint8 in, new array out
    swapper.swap_video("in.mp4", "out.mp4")         # same fps/size, audio kept
    swapper.set_source("other.jpg")                 # identity net + IIN only

    models = mfs_fast.load_weights("weights/")          # converted or official files
    weights = models.identity_weights(identity_input)   # once per source (IIN)
    result, mask = models.swap(aligned_batch, weights)  # per frame (IDN)
"""

from . import native
from .aligned import AlignedSwap, swap_aligned
from .backends import available_backends, create_backend
from .checkpoints import load_official, load_weights, save_weights
from .errors import (
    CheckpointError,
    ImageError,
    MediaError,
    MfsError,
    NativeUnavailableError,
    NoFaceError,
    UnsafeCheckpointError,
    VideoError,
)
from .face import Face
from .identity.irse import IRSEResNet
from .models import IDN, IIN, FaceSwapModels, IdentityWeights, PointwiseModulation
from .pipeline import AlignedCrop, Swapper, SwapStats

from ._version import __version__  # noqa: E402

__all__ = [
    "IDN",
    "IIN",
    "AlignedCrop",
    "AlignedSwap",
    "CheckpointError",
    "Face",
    "FaceSwapModels",
    "IRSEResNet",
    "IdentityWeights",
    "ImageError",
    "MediaError",
    "MfsError",
    "NativeUnavailableError",
    "NoFaceError",
    "PointwiseModulation",
    "SwapStats",
    "Swapper",
    "UnsafeCheckpointError",
    "VideoError",
    "available_backends",
    "create_backend",
    "load_official",
    "load_weights",
    "native",
    "save_weights",
    "swap_aligned",
]
