"""Every pixel conversion: colour order (BGR <-> RGB), value range (8-bit <-> [0, 1]) and layout
(H x W x C <-> C x H x W), between frames (BGR uint8 numpy) and model tensors (RGB float).

The official ones are exactly as the official release does them (image_test.py / utils):
bit-level agreement depends on these details: the identity crop is resized with
``cv2.resize``'s default (bilinear) interpolation, colours go BGR -> RGB, pixels are divided by
255 and normalised by ImageNet mean/std; outputs are scaled by 255 and rounded to nearest-even
with saturation, as ``cv2.imwrite`` does with float images.

Division by 255 (:func:`to_unit`, numpy or torch) gives the same values whatever the layout;
the per-frame batch of :func:`crops_to_batch` multiplies by 1/255 instead (it differs in the
last bit for half the values; kept, as the backends were measured with it). Each function
keeps the memory layout its callers had (contiguous or a permuted view), since a reduction
over a differently laid out tensor may round differently.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

# the official identity net's input: the aligned crop shrunk to 112 x 112 (IR-SE ArcFace)
IDENTITY_INPUT_SIZE = 112
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)


def bgr_to_rgb(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """8-bit BGR H x W x 3 -> RGB (the same swap turns RGB into BGR): a new contiguous array, or
    written into ``out`` (no allocation)."""
    if out is None:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if out.flags.c_contiguous and out.shape == image.shape and out.dtype == image.dtype:
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=out)  # ~40x faster than numpy's strided copy
    else:
        out[...] = image[..., ::-1]
    return out


rgb_to_bgr = bgr_to_rgb  # the same channel swap


def to_unit(pixels: np.ndarray | Tensor) -> np.ndarray | Tensor:
    """8-bit pixels -> float32 in [0, 1] (divided by 255), same shape and layout: a numpy array
    or a torch tensor (a uint8 one: the float copy is divided in place)."""
    if isinstance(pixels, Tensor):
        return pixels.float().div_(255.0)
    return pixels.astype(np.float32) / 255.0


def nhwc_to_nchw(images: np.ndarray | Tensor) -> Tensor:
    """N x H x W x C -> a N x C x H x W tensor view of the same memory (no copy)."""
    return (images if isinstance(images, Tensor) else torch.from_numpy(images)).permute(0, 3, 1, 2)


def chw_to_hwc(image: Tensor) -> np.ndarray:
    """C x H x W tensor -> H x W x C numpy array of the same dtype (a view when on the CPU)."""
    return image.detach().cpu().permute(1, 2, 0).numpy()


def bgr_to_unit_rgb(image: np.ndarray) -> np.ndarray:
    """8-bit BGR H x W x 3 -> float32 RGB H x W x 3 in [0, 1]."""
    return to_unit(image[..., ::-1])


def bgr_to_chw(image: np.ndarray) -> Tensor:
    """8-bit BGR H x W x 3 -> float RGB 3 x H x W in [0, 1], contiguous (one training sample)."""
    return to_unit(torch.from_numpy(np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1))))


def crops_to_batch(crops: Sequence[np.ndarray]) -> np.ndarray:
    """BGR uint8 crops -> RGB float32 N x 3 x S x S in [0, 1], contiguous (the backends' input)."""
    stacked = np.stack(crops)[..., ::-1].astype(np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(stacked.transpose(0, 3, 1, 2))


def unit_rgb_to_bgr255(image: np.ndarray) -> np.ndarray:
    """Float RGB H x W x 3 in [0, 1] -> float BGR H x W x 3 in [0, 255], what ``paste_back`` takes
    (one new array: the scaled channel-reversed view)."""
    return image[..., ::-1] * np.float32(255.0)


def batch_item_to_bgr255(item: np.ndarray) -> np.ndarray:
    """One item of a backend's output (RGB float 3 x S x S in [0, 1]) -> float BGR S x S x 3 in [0, 255]."""
    return unit_rgb_to_bgr255(item.transpose(1, 2, 0))


def bgr_to_tensor(image: np.ndarray) -> Tensor:
    """8-bit BGR H x W x 3 -> float RGB 1 x 3 x H x W in [0, 1] (channels-last memory)."""
    rgb = bgr_to_rgb(image)
    chw = np.transpose(rgb, (2, 0, 1)).astype(np.float32)[None]
    return torch.from_numpy(chw / np.float32(255.0))


def identity_input(aligned_bgr: np.ndarray) -> Tensor:
    """Aligned source crop (any square size, usually 224) -> identity-net input 1x3x112x112."""
    small = cv2.resize(aligned_bgr, (IDENTITY_INPUT_SIZE, IDENTITY_INPUT_SIZE))
    x = bgr_to_tensor(small).numpy()
    return torch.from_numpy((x - IMAGENET_MEAN) / IMAGENET_STD)


def tensor_to_bgr(image: Tensor) -> np.ndarray:
    """RGB N x C x H x W in [0, 1] (first item used) -> 8-bit BGR (or gray for C = 1)."""
    hwc = chw_to_hwc(image[0]) * np.float32(255.0)
    pixels = np.clip(np.rint(hwc), 0, 255).astype(np.uint8)
    return rgb_to_bgr(pixels) if pixels.shape[2] == 3 else pixels[:, :, 0]


def unit_chw_to_bgr(image: Tensor) -> np.ndarray:
    """Float RGB 3 x H x W (any device) -> 8-bit BGR H x W x 3, clamped to [0, 1] and rounded half
    up (training previews; :func:`tensor_to_bgr` rounds half to even, as the official code)."""
    hwc = chw_to_hwc(image.detach().float().clamp(0, 1))
    return np.ascontiguousarray((hwc * 255 + 0.5).astype(np.uint8)[..., ::-1])
