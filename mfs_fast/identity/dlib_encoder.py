"""The offline identity encoder: the dlib ResNet port behind the :class:`IdentityEncoder` interface."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from .base import IdentityEncoder, IdentityFeatures
from .dlib_chip import CHIP_SIZE, dlib_chip_matrix
from .dlib_resnet import EMBEDDING_DIM, DlibResNet
from .model_files import dlib_model_path

# dlib's own rule: same person when the Euclidean distance of descriptors is below 0.6
DLIB_DISTANCE_THRESHOLD = 0.6


@lru_cache(maxsize=4)
def _load_network(path: str) -> DlibResNet:
    return DlibResNet.from_file(path)


def forget_shared_networks() -> None:
    """Drop the cache's references to loaded dlib networks (encoders that hold one keep it), so
    a network no encoder uses any more is freed; the next encoder reads its file again."""
    _load_network.cache_clear()


class DlibIdentityEncoder(IdentityEncoder):
    """128-d dlib face descriptors (99.38 % on LFW) and the maps 32x35x35 ... 256x2x2.

    ``embedding`` is the L2-normalised descriptor; ``raw`` is dlib's own descriptor, on which
    :meth:`distance` and dlib's 0.6 threshold work. ``match_threshold`` (cosine) is the value
    that separates the same 5 people x 11 chips best (measured in the tests' data).
    """

    name = "dlib"
    chip_size = CHIP_SIZE
    match_threshold = 0.91

    def __init__(self, model_path: str | Path | None = None) -> None:
        super().__init__()
        path = Path(model_path) if model_path is not None else dlib_model_path()
        # shared between encoders: the weights never change, and no gradients reach them
        self.net = _load_network(str(path.resolve()))
        self.model_path = path

    @property
    def embedding_dim(self) -> int:
        return EMBEDDING_DIM

    def chip_matrix(self, landmarks: np.ndarray) -> np.ndarray:
        return dlib_chip_matrix(landmarks)

    def embed_chips(self, chips: Tensor) -> IdentityFeatures:
        features = self.net(chips * 255.0)
        maps = dict(features.maps)
        return IdentityFeatures(F.normalize(features.descriptor, dim=1), maps, features.descriptor)

    @staticmethod
    def distance(a: Tensor, b: Tensor) -> Tensor:
        """Euclidean distance of raw dlib descriptors (same person below 0.6)."""
        return (a[:, None, :] - b[None, :, :]).norm(dim=2)
