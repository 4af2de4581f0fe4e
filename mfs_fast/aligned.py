"""Pre-aligned swapping: the official ``image_test.py`` with ``merge_result=False``.

Source and target are aligned square crops (224 for the official weights); the result is
the IDN's blended face at the crop's resolution, plus the fusion mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ImageError
from .models import FaceSwapModels
from .preprocess import bgr_to_tensor, tensor_to_bgr

SUPPORTED_CROP_SIZES = (224, 256)


@dataclass(frozen=True)
class AlignedSwap:
    image: np.ndarray  # 8-bit BGR, the size of the target crop
    mask: np.ndarray  # 8-bit gray fusion mask


def check_aligned_crop(image: np.ndarray, role: str) -> None:
    """Aligned crops are square and 224 (or 256) pixels; anything else is not an aligned crop."""
    h, w = image.shape[:2]
    if h != w or h not in SUPPORTED_CROP_SIZES:
        sizes = " or ".join(f"{s}x{s}" for s in SUPPORTED_CROP_SIZES)
        raise ImageError(f"{role} is {w}x{h}; --aligned expects a square aligned face crop of {sizes}")


def swap_aligned(models: FaceSwapModels, source_bgr: np.ndarray, target_bgr: np.ndarray) -> AlignedSwap:
    """Swap the identity of ``source_bgr`` onto ``target_bgr`` (both aligned crops)."""
    check_aligned_crop(source_bgr, "source")
    check_aligned_crop(target_bgr, "target")
    weights = models.identity_weights(models.identity_input(source_bgr))
    result, mask = models.swap(bgr_to_tensor(target_bgr), weights)
    return AlignedSwap(image=tensor_to_bgr(result), mask=tensor_to_bgr(mask))
