"""The official IR-SE-101 ArcFace (when its weights are given) behind the :class:`IdentityEncoder` interface."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..face.align import alignment_matrix
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD
from .base import IdentityEncoder, IdentityFeatures
from .irse import EMBEDDING_DIM, INPUT_SIZE, IRSEResNet


class ArcFaceIdentityEncoder(IdentityEncoder):
    """512-d ArcFace embeddings and its 512x7x7 map; the chip is our 224 crop at 112 px, as
    the official release feeds it (x shifted by +8 px, so the same template at half size)."""

    name = "arcface"
    chip_size = INPUT_SIZE
    match_threshold = 0.5

    def __init__(self, network: IRSEResNet) -> None:
        super().__init__()
        self.net = network.eval().requires_grad_(False)
        self.register_buffer("mean", torch.from_numpy(IMAGENET_MEAN.copy()))
        self.register_buffer("std", torch.from_numpy(IMAGENET_STD.copy()))

    @property
    def embedding_dim(self) -> int:
        return EMBEDDING_DIM

    def chip_matrix(self, landmarks: np.ndarray) -> np.ndarray:
        # the official input: the 224 crop shrunk by cv2.resize, whose pixel centres map as
        # u = (x + 0.5) / 2 - 0.5, so the chip is that half-size map of the 224 alignment
        crop = np.vstack([alignment_matrix(landmarks, 2 * INPUT_SIZE).astype(np.float64), [0, 0, 1]])
        return (np.array([[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]]) @ crop)[:2]

    def embed_chips(self, chips: Tensor) -> IdentityFeatures:
        embedding, feature_map = self.net((chips - self.mean) / self.std)
        return IdentityFeatures(F.normalize(embedding, dim=1), {"512x7x7": feature_map}, embedding)
