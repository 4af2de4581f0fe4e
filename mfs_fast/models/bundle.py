"""The three networks of MobileFaceSwap, held together: identity net, IIN and IDN."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

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

    identity: IRSEResNet | None  # None while release_source_nets() has freed it
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
    # reads these weights again from where they came (set by load_weights): lets
    # release_source_nets() free the nets a source needs once, read back for the next source
    reload: Callable[[], "FaceSwapModels"] | None = field(default=None, repr=False, compare=False)
    _released_digest: str | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def random(cls, seed: int = 0) -> "FaceSwapModels":
        """Randomly initialised networks (for shapes, counting and timing, never for swaps)."""
        torch.manual_seed(seed)
        return cls(IRSEResNet(), IIN(), IDN()).eval()

    def eval(self) -> "FaceSwapModels":
        for net in (self.identity, self.iin, self.idn):
            if net is not None:  # the identity net is None while released
                net.eval().requires_grad_(False)
        return self

    def release_source_nets(self) -> bool:
        """Free the identity net and the IIN's weights predictor, which only a new source runs
        (~110 MB resident for the starter weights; 273 MB of float32 tensors in the official ones),
        while a video streams; the next :meth:`identity_input` reads them back from
        :attr:`reload`, checked bit-identical. False (nothing freed) without it."""
        if self.reload is None or self._released_digest is not None:
            return False
        self._released_digest = self._source_nets_digest()
        self.identity, self.iin.predictor = None, None
        from ..identity.dlib_encoder import forget_shared_networks

        forget_shared_networks()  # the dlib network is cached for trainers' copies; holders keep theirs
        return True

    def restore_source_nets(self) -> None:
        """Read back what :meth:`release_source_nets` freed (nothing to do when it was not)."""
        if self._released_digest is None:
            return
        from ..errors import CheckpointError

        fresh = self.reload()
        self.identity, self.iin.predictor = fresh.identity, fresh.iin.predictor
        if self._source_nets_digest() != self._released_digest:
            self.identity, self.iin.predictor = None, None  # never a mix of two trainings
            raise CheckpointError("the weights changed on disk since they were loaded; load them again "
                                  "(make a new Swapper) to use the new ones")
        self._released_digest = None

    def _source_nets_digest(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        for net in (self.identity, self.iin.predictor):
            for name, value in net.state_dict().items():
                digest.update(name.encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def identity_input(self, aligned_bgr) -> Tensor:
        """An aligned BGR source crop prepared the way this bundle's identity net takes it."""
        self.restore_source_nets()
        prepare = getattr(self.identity, "prepare", None)
        if prepare is not None:
            return prepare(aligned_bgr)
        return identity_input(aligned_bgr)

    @torch.no_grad()
    def identity_weights(self, identity_input: Tensor) -> IdentityWeights:
        """Source image prepared for the identity net (1x3x112x112) -> the IDN's weights."""
        self.restore_source_nets()
        embedding, feature_map = self.identity(identity_input)
        return self.iin(l2_normalize(embedding), feature_map)

    @torch.no_grad()
    def swap(self, aligned: Tensor, weights: IdentityWeights) -> tuple[Tensor, Tensor]:
        """Aligned RGB batch in [0, 1] -> (swapped batch, fusion mask)."""
        return self.idn(aligned, weights)
