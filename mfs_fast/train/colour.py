"""Colour loss: the swap keeps the target's colours (skin tone, eye colour) at a coarse scale.

Why: identity and pixel losses let the student drift a face's colour (eyes turning blue-grey,
washed-out, purple-tinted skin: a held-out eye / skin colour shift of 7.9 / 7.3 Lab units
against the mesh-warp teacher's 2.8 / 4.2).

How, and why not the evaluation's regions: a first version pulled the mean Lab colour of the
very discs `mfs-fast eval` reads (:mod:`mfs_fast.eval.appearance`) toward the target's, and the
student learned to paint those discs: round patches on the forehead and cheeks, a gamed metric.
This one compares blurred CIE Lab images over the whole face hull, so no place is singled out.
Everything the student changes is low-frequency (the Swapper keeps the target's fine detail),
so lightness, which carries the face's shading and much of its identity, weighs less than
chroma (a, b), which carries the colour casts people see.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .losses import gaussian_blur

_D65_WHITE = (0.950456, 1.0, 1.088754)  # OpenCV's white point for its Lab conversion
_RGB_TO_XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                            [0.212671, 0.715160, 0.072169],
                            [0.019334, 0.119193, 0.950227]])
_EPSILON = 0.008856  # (6/29)^3: where Lab's cube root turns linear
_SLOPE = 7.787


def rgb_to_lab(images: Tensor) -> Tensor:
    """N x 3 x H x W sRGB in [0, 1] -> CIE Lab (L 0..100), as ``cv2.COLOR_RGB2Lab`` on floats."""
    rgb = images.clamp(0.0, 1.0)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = torch.einsum("ij,njhw->nihw", _RGB_TO_XYZ.to(images), linear)
    xyz = xyz / torch.tensor(_D65_WHITE, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    f = torch.where(xyz > _EPSILON, xyz.clamp_min(_EPSILON) ** (1.0 / 3.0), _SLOPE * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(dim=1)
    lightness = torch.where(xyz[:, 1] > _EPSILON, 116.0 * fy - 16.0, 903.3 * xyz[:, 1])
    return torch.stack([lightness, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def colour_loss(result: Tensor, target: Tensor, face_mask: Tensor, sigma: float, lightness_weight: float,
                margin: float = 0.0) -> Tensor:
    """Per sample (N): the mean over the face hull (N x 1 x H x W) of the Lab distance between
    result and target, both blurred by ``sigma`` crop pixels, lightness scaled by
    ``lightness_weight``; less ``margin`` Lab units (a cast that small is free: colour is an
    identity cue too)."""
    weights = torch.tensor([lightness_weight, 1.0, 1.0], dtype=torch.float32, device=result.device).view(1, 3, 1, 1)
    difference = gaussian_blur(rgb_to_lab(result.float()) - rgb_to_lab(target.float()), sigma) * weights
    distance = (difference.pow(2).sum(dim=1, keepdim=True) + 1e-6).sqrt()  # smooth at 0
    mean = (distance * face_mask).flatten(1).sum(dim=1) / face_mask.flatten(1).sum(dim=1).clamp_min(1.0)
    return (mean - margin).clamp_min(0.0)


__all__ = ["colour_loss", "rgb_to_lab"]
