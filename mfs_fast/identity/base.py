"""The identity-encoder interface: one face in, an identity embedding and feature maps out.

Every encoder brings its own alignment (the chip its network was trained on) and can embed
from three kinds of input:

- ``embed(aligned)``: crops aligned by our pipeline (RGB N x 3 x S x S in [0, 1], the crop
  the IDN works on). The encoder re-samples its chip from the crop with a fixed affine
  (``grid_sample``), so this path is differentiable: training's identity loss uses it. The
  crop is a full affine fit to the template, so a face's own proportions are normalised away:
  on test faces the embedding is within cosine 0.95 of the direct path's, not equal to it.
- ``embed_chips(chips)``: chips already in the network's own alignment (parity tests).
- ``embed_faces(frame, landmarks)``: straight from a BGR frame and our 5 landmarks, the most
  faithful path (no double resampling, nothing cut off by the crop): selection and evaluation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..face.align import template
from ..preprocess import bgr_to_rgb, nhwc_to_nchw, to_unit


@dataclass
class IdentityFeatures:
    """``embedding``: N x D, L2-normalised; ``maps``: intermediate feature maps by name
    (e.g. ``"256x4x4"``); ``raw``: the network's un-normalised output. Unpacks as
    ``embedding, maps = features``."""

    embedding: Tensor
    maps: dict[str, Tensor] = field(default_factory=dict)
    raw: Tensor | None = None

    def __iter__(self) -> Iterator:
        return iter((self.embedding, self.maps))

    def split(self, sizes: list[int]) -> list["IdentityFeatures"]:
        """The features of consecutive row blocks of these sizes: one encoder pass over
        several batches, handed back per batch."""
        embeddings = self.embedding.split(sizes)
        maps = {name: value.split(sizes) for name, value in self.maps.items()}
        raws = self.raw.split(sizes) if self.raw is not None else [None] * len(sizes)
        return [IdentityFeatures(embeddings[i], {name: parts[i] for name, parts in maps.items()}, raws[i])
                for i in range(len(sizes))]


def similarity(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> Tensor:
    """Cosine similarity of embeddings: rows of ``a`` against rows of ``b`` (N x M), or of
    two single vectors (a scalar tensor)."""
    a_t, b_t = torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    single = a_t.dim() == 1 and b_t.dim() == 1
    a_t, b_t = F.normalize(a_t.reshape(-1, a_t.shape[-1]), dim=1), F.normalize(b_t.reshape(-1, b_t.shape[-1]), dim=1)
    result = a_t @ b_t.T
    return result[0, 0] if single else result


def similarity_fit(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, shift) mapping points to target."""
    src, dst = np.asarray(points, np.float64), np.asarray(target, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    s, d = src - src_mean, dst - dst_mean
    a = (s * d).sum() / (s**2).sum()
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / (s**2).sum()
    linear = np.array([[a, -b], [b, a]])
    return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]])


def affine_grid_theta(chip_to_crop: np.ndarray, chip_size: int, crop_size: int) -> Tensor:
    """``F.affine_grid`` theta that samples a chip from a crop given a pixel-space 2x3 map
    chip pixel -> crop pixel (pixel centres at integers, as OpenCV; align_corners=False)."""
    # normalised n = (2p + 1) / size - 1  <=>  p = ((n + 1) size - 1) / 2
    to_pixels = np.array([[chip_size / 2, 0, (chip_size - 1) / 2], [0, chip_size / 2, (chip_size - 1) / 2], [0, 0, 1]])
    to_normal = np.array([[2 / crop_size, 0, 1 / crop_size - 1], [0, 2 / crop_size, 1 / crop_size - 1], [0, 0, 1]])
    full = to_normal @ np.vstack([chip_to_crop, [0, 0, 1]]) @ to_pixels
    return torch.tensor(full[:2], dtype=torch.float32)


class IdentityEncoder(nn.Module, ABC):
    """Base class: subclasses set ``name``, ``chip_size``, ``match_threshold`` and implement
    :meth:`chip_matrix` (their alignment) and :meth:`embed_chips` (their network)."""

    name: str = "identity"
    chip_size: int = 112
    # cosine similarity at or above which two faces are taken for the same person
    match_threshold: float = 0.5

    @abstractmethod
    def chip_matrix(self, landmarks: np.ndarray) -> np.ndarray:
        """2x3 affine frame pixel -> chip pixel for a face with our 5 landmarks."""

    @abstractmethod
    def embed_chips(self, chips: Tensor) -> IdentityFeatures:
        """RGB N x 3 x chip x chip in [0, 1], in this network's own alignment."""

    def embed(self, aligned: Tensor) -> IdentityFeatures:
        """RGB N x 3 x S x S in [0, 1], aligned by our pipeline (:func:`mfs_fast.face.align_face`)."""
        if aligned.dim() != 4 or aligned.shape[1] != 3 or aligned.shape[2] != aligned.shape[3]:
            raise ValueError(f"embed takes aligned RGB crops N x 3 x S x S, got {tuple(aligned.shape)}")
        return self.embed_chips(self.chips_from_aligned(aligned))

    def chips_from_aligned(self, aligned: Tensor) -> Tensor:
        """Differentiable resampling of this encoder's chip out of our aligned crops."""
        crop_size = aligned.shape[-1]
        chip_to_crop = np.linalg.inv(np.vstack([self.chip_matrix(template(crop_size)), [0, 0, 1]]))[:2]
        theta = affine_grid_theta(chip_to_crop, self.chip_size, crop_size).to(aligned)
        grid = F.affine_grid(theta.expand(aligned.shape[0], 2, 3), [aligned.shape[0], 3, self.chip_size, self.chip_size],
                             align_corners=False)
        return F.grid_sample(aligned, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def chip(self, frame_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """This encoder's RGB uint8 chip of one face, warped straight from the frame."""
        chip = cv2.warpAffine(frame_bgr, self.chip_matrix(landmarks), (self.chip_size, self.chip_size), flags=cv2.INTER_LINEAR)
        return bgr_to_rgb(chip)

    @torch.no_grad()
    def embed_faces(self, frame_bgr: np.ndarray, landmarks: Sequence[np.ndarray]) -> IdentityFeatures:
        """Embed the faces with these landmarks in one BGR uint8 frame (one batch)."""
        if len(landmarks) == 0:
            return IdentityFeatures(torch.zeros(0, self.embedding_dim))
        chips = np.stack([self.chip(frame_bgr, points) for points in landmarks])
        return self.embed_chips(to_unit(nhwc_to_nchw(chips)))

    @property
    @abstractmethod
    def embedding_dim(self) -> int:
        """Length of the embedding."""

    def same_person(self, a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> Tensor:
        """Whether embeddings belong to the same person, by this encoder's threshold."""
        return similarity(a, b) >= self.match_threshold
