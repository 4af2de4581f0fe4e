"""One encoder's embedding with another encoder's feature maps, for measurements that need both.

Why: ``mfs-fast eval`` scores identity (retrieval, similarity) with a chosen encoder, while
FD-dlib is by definition computed on dlib's pooled 256x2x2 map. Pairing lets the evaluation
swap the identity opinion without changing what FD-dlib means.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .base import IdentityEncoder, IdentityFeatures


class PairedIdentityEncoder(IdentityEncoder):
    """``embedding``/``raw``/threshold from ``identity``; ``maps`` from ``maps_from`` (and the
    identity encoder's own maps where the names do not clash)."""

    def __init__(self, identity: IdentityEncoder, maps_from: IdentityEncoder) -> None:
        super().__init__()
        self.identity, self.maps_from = identity, maps_from
        self.name = identity.name
        self.chip_size = identity.chip_size
        self.match_threshold = identity.match_threshold

    @property
    def embedding_dim(self) -> int:
        return self.identity.embedding_dim

    def chip_matrix(self, landmarks: np.ndarray) -> np.ndarray:
        return self.identity.chip_matrix(landmarks)

    def embed_chips(self, chips: Tensor) -> IdentityFeatures:
        raise NotImplementedError("a paired encoder has two chip alignments: use embed() or embed_faces()")

    def _merge(self, primary: IdentityFeatures, secondary: IdentityFeatures) -> IdentityFeatures:
        return IdentityFeatures(primary.embedding, {**primary.maps, **secondary.maps}, primary.raw)

    def embed(self, aligned: Tensor) -> IdentityFeatures:
        return self._merge(self.identity.embed(aligned), self.maps_from.embed(aligned))

    @torch.no_grad()
    def embed_faces(self, frame_bgr: np.ndarray, landmarks: Sequence[np.ndarray]) -> IdentityFeatures:
        return self._merge(self.identity.embed_faces(frame_bgr, landmarks),
                           self.maps_from.embed_faces(frame_bgr, landmarks))
