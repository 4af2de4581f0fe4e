"""Which detected faces to swap: all, the largest, or those that look like a reference person."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import MfsError
from ..preprocess import bgr_to_tensor
from .types import Face

if TYPE_CHECKING:
    from ..identity import IdentityEncoder

POLICIES = ("all", "largest")
# Every identity encoder returns L2-normalised embeddings, so similarities are cosines.
SIMILARITY_RANGE = (-1.0, 1.0)


def check_policy(policy: object) -> str:
    """``policy`` if it is one of :data:`POLICIES`, else an MfsError listing them."""
    if policy not in POLICIES:
        raise MfsError(f"faces must be one of {', '.join(POLICIES)} (or pass a reference image), got {policy!r}")
    return policy


def check_similarity(threshold: object) -> float | None:
    """A reference-match threshold as a float in :data:`SIMILARITY_RANGE` (``None`` = the
    encoder's default); anything else is an MfsError, since no cosine can reach e.g. 5."""
    if threshold is None:
        return None
    low, high = SIMILARITY_RANGE
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not low <= float(threshold) <= high:
        raise MfsError(f"similarity must be a cosine similarity between {low:g} and {high:g}, got {threshold!r}")
    return float(threshold)


class FaceSelector:
    """``select(frame, faces)`` applies the policy; a reference identity narrows it further.

    Reference matching embeds every candidate face of a frame in one batch with an
    :class:`~mfs_fast.identity.IdentityEncoder` (straight from the frame, in the encoder's
    own alignment) and keeps those whose cosine similarity to the reference is at least
    ``threshold`` (default: the encoder's ``match_threshold``).
    """

    def __init__(self, policy: str = "all", encoder: "IdentityEncoder | None" = None,
                 threshold: float | None = None) -> None:
        self.policy, self.encoder = check_policy(policy), encoder
        self._threshold = check_similarity(threshold)
        self.reference: np.ndarray | None = None

    @property
    def threshold(self) -> float:
        if self._threshold is not None:
            return self._threshold
        return self.encoder.match_threshold if self.encoder is not None else 0.5

    def set_reference(self, frame: np.ndarray, face: Face) -> None:
        """Only faces with identity similarity >= threshold to this face will be selected."""
        if self.encoder is None:
            raise MfsError("reference matching needs an identity encoder")
        self.reference = self.encoder.embed_faces(frame, [face.landmarks]).embedding[0].numpy()

    def set_reference_crop(self, aligned_bgr: np.ndarray) -> None:
        """The same from an already aligned crop (our 224 alignment), through ``encoder.embed``."""
        import torch

        if self.encoder is None:
            raise MfsError("reference matching needs an identity encoder")
        with torch.no_grad():
            self.reference = self.encoder.embed(bgr_to_tensor(aligned_bgr)).embedding[0].numpy()

    def similarities(self, frame: np.ndarray, faces: list[Face]) -> list[float]:
        """Cosine similarity of each face's identity embedding to the reference."""
        if self.reference is None or self.encoder is None:
            raise MfsError("no reference face set")
        embeddings = self.encoder.embed_faces(frame, [f.landmarks for f in faces]).embedding.numpy()
        return [float(s) for s in embeddings @ self.reference]

    def select(self, frame: np.ndarray, faces: list[Face]) -> list[Face]:
        """The faces to swap: those matching the reference (if set), then the policy."""
        if self.reference is not None and faces:
            faces = [f for f, s in zip(faces, self.similarities(frame, faces)) if s >= self.threshold]
        if self.policy == "largest" and faces:
            return [max(faces, key=lambda f: f.area)]
        return list(faces)
