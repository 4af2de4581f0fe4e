"""The three networks of MobileFaceSwap, held together: identity net, IIN and IDN."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..identity.irse import IRSEResNet, l2_normalize
from ..preprocess import identity_input
from .identity_weights import IdentityWeights
from .idn import IDN
from .iin import IIN

MAX_PASTE_DETAIL = 8.0  # crop pixels: the largest detail a paste keeps (Swapper(detail=) and manifests)


@dataclass
class FaceSwapModels:
    """Identity net + IIN (run once per source) and the IDN (run per frame)."""

    identity: IRSEResNet
    iin: IIN
    idn: IDN
    # crop pixels of the target's own detail the paste should keep (Swapper(detail=)): weights
    # trained with it (train config keep_target_detail) expect it; 0 for the official ones
    paste_detail: float = 0.0
    # shares of the change's colour and mean brightness the paste keeps (Swapper(chroma=,
    # brightness=); train config paste_chroma / paste_brightness); 1 (all) for the official ones
    paste_chroma: float = 1.0
    paste_brightness: float = 1.0
    # whose eyes the paste shows (Swapper(eyes=); mfs_fast.face.paste.EYES): "swap" for the official ones
    paste_eyes: str = "swap"

    @classmethod
    def random(cls, seed: int = 0) -> "FaceSwapModels":
        """Randomly initialised networks (for shapes, counting and timing, never for swaps)."""
        torch.manual_seed(seed)
        return cls(IRSEResNet(), IIN(), IDN()).eval()

    def eval(self) -> "FaceSwapModels":
        for net in (self.identity, self.iin, self.idn):
            net.eval().requires_grad_(False)
        return self

    def identity_input(self, aligned_bgr) -> Tensor:
        """An aligned BGR source crop prepared the way this bundle's identity net takes it."""
        prepare = getattr(self.identity, "prepare", None)
        if prepare is not None:
            return prepare(aligned_bgr)
        return identity_input(aligned_bgr)

    @torch.no_grad()
    def identity_weights(self, identity_input: Tensor) -> IdentityWeights:
        """Source image prepared for the identity net (1x3x112x112) -> the IDN's weights."""
        embedding, feature_map = self.identity(identity_input)
        return self.iin(l2_normalize(embedding), feature_map)

    @torch.no_grad()
    def swap(self, aligned: Tensor, weights: IdentityWeights) -> tuple[Tensor, Tensor]:
        """Aligned RGB batch in [0, 1] -> (swapped batch, fusion mask)."""
        return self.idn(aligned, weights)
