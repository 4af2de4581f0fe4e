"""Tensor conversions exactly as the official release does them (image_test.py / utils).

Bit-level agreement with the official pipeline depends on these details: the identity crop
is resized with ``cv2.resize``'s default (bilinear) interpolation, colours go BGR -> RGB,
pixels are divided by 255 and normalised by ImageNet mean/std; outputs are scaled by 255 and
rounded to nearest-even with saturation, as ``cv2.imwrite`` does with float images.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

# the official identity net's input: the aligned crop shrunk to 112 x 112 (IR-SE ArcFace)
IDENTITY_INPUT_SIZE = 112
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)


def bgr_to_tensor(image: np.ndarray) -> Tensor:
    """8-bit BGR H x W x 3 -> float RGB 1 x 3 x H x W in [0, 1]."""
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    chw = np.transpose(rgb, (2, 0, 1)).astype(np.float32)[None]
    return torch.from_numpy(chw / np.float32(255.0))


def identity_input(aligned_bgr: np.ndarray) -> Tensor:
    """Aligned source crop (any square size, usually 224) -> identity-net input 1x3x112x112."""
    small = cv2.resize(aligned_bgr, (IDENTITY_INPUT_SIZE, IDENTITY_INPUT_SIZE))
    x = bgr_to_tensor(small).numpy()
    return torch.from_numpy((x - IMAGENET_MEAN) / IMAGENET_STD)


def tensor_to_bgr(image: Tensor) -> np.ndarray:
    """RGB N x C x H x W in [0, 1] (first item used) -> 8-bit BGR (or gray for C = 1)."""
    hwc = image[0].detach().cpu().permute(1, 2, 0).numpy() * np.float32(255.0)
    pixels = np.clip(np.rint(hwc), 0, 255).astype(np.uint8)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if pixels.shape[2] == 3 else pixels[:, :, 0]
