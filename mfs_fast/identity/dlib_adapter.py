"""The student's identity net without ArcFace: the offline dlib encoder plus a learned adapter.

The IIN was designed for ArcFace's outputs (a 512-d embedding and a 512x7x7 map). Those
weights cannot be had offline, so the project's own weights use the dlib ResNet port
(:mod:`.dlib_encoder`) and learn a small adapter from its outputs to the IIN's inputs:

- embedding: dlib's L2-normalised 128-d descriptor, standardised -> Linear(128, 512) -> the
  IIN's z_id (the IIN L2-normalises it again);
- feature map: dlib's 256x4x4 stage map, standardised per channel -> 1x1 conv to 512 channels
  -> bilinear 4x4 -> 7x7 -> LeakyReLU -> 1x1 conv (512 -> 512), so the spatial layout of the
  face is kept for the depthwise kernel predictor.

Standardised: minus the training faces' mean, over their standard deviation (buffers set once
by :meth:`DlibAdaptedIdentity.standardise_inputs`, saved with the weights). dlib descriptors of
*different* people still have cosine ~0.8: a large shared component, under which the
differences between identities start out too small to move the IIN's output (measured: after
500 steps without it, results for different sources differed by 0.007 of the [0, 1] range).

The dlib weights are never trained and are not part of this module's state (they come from
the installed package); only the adapter's 0.46M parameters are saved with the weights.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..preprocess import bgr_to_tensor
from .dlib_encoder import DlibIdentityEncoder
from .irse import EMBEDDING_DIM as ARCFACE_DIM  # the IIN takes ArcFace's outputs: 512-d and 512 x 7 x 7

DLIB_MAP = "256x4x4"
IDENTITY_KIND = "dlib-adapter"


class DlibAdaptedIdentity(nn.Module):
    """``forward(aligned)``: RGB N x 3 x S x S in [0, 1] (our aligned crop) -> (z_id, F_id)."""

    kind = IDENTITY_KIND

    def __init__(self, encoder=None) -> None:
        super().__init__()
        if encoder is None:
            encoder = DlibIdentityEncoder()
        self.use_encoder(encoder)
        self.register_buffer("embedding_input_mean", torch.zeros(128))
        self.register_buffer("embedding_input_std", torch.ones(128))
        self.register_buffer("map_input_mean", torch.zeros(256, 1, 1))
        self.register_buffer("map_input_std", torch.ones(256, 1, 1))
        self.embedding = nn.Linear(128, ARCFACE_DIM)
        self.map_in = nn.Conv2d(256, ARCFACE_DIM, 1)
        self.map_out = nn.Conv2d(ARCFACE_DIM, ARCFACE_DIM, 1)

    def use_encoder(self, encoder) -> None:
        """Set the dlib encoder, kept out of the module tree: not saved, not trained, not
        moved by the bundle's ``.to()`` (one encoder can serve a student and its copies)."""
        self.__dict__["encoder"] = encoder

    def prepare(self, aligned_bgr: np.ndarray) -> Tensor:
        """Aligned BGR uint8 crop -> this net's input (RGB 1 x 3 x S x S in [0, 1])."""
        return bgr_to_tensor(aligned_bgr)

    @torch.no_grad()
    def standardise_inputs(self, embeddings: Tensor, maps: Tensor) -> None:
        """Set the input statistics from dlib outputs of many faces (N x 128, N x 256 x 4 x 4)."""
        self.embedding_input_mean.copy_(embeddings.mean(dim=0))
        self.embedding_input_std.copy_(embeddings.std(dim=0).clamp_min(1e-4))
        self.map_input_mean.copy_(maps.mean(dim=(0, 2, 3))[:, None, None])
        self.map_input_std.copy_(maps.std(dim=(0, 2, 3)).clamp_min(1e-4)[:, None, None])

    def adapt(self, embedding: Tensor, dlib_map: Tensor) -> tuple[Tensor, Tensor]:
        """dlib outputs (N x 128, N x 256 x 4 x 4) -> IIN inputs (N x 512, N x 512 x 7 x 7)."""
        embedding = (embedding - self.embedding_input_mean) / self.embedding_input_std
        dlib_map = (dlib_map - self.map_input_mean) / self.map_input_std
        feature_map = F.interpolate(self.map_in(dlib_map), size=(7, 7), mode="bilinear", align_corners=False)
        return self.embedding(embedding), self.map_out(F.leaky_relu(feature_map, 0.2))

    def forward(self, aligned: Tensor) -> tuple[Tensor, Tensor]:
        encoder = self.encoder.to(aligned.device)
        with torch.no_grad():
            features = encoder.embed(aligned)
        return self.adapt(features.embedding, features.maps[DLIB_MAP])
