"""Colour loss: the swap keeps the target's mean colour in its eyes and on its skin.

Why: identity and pixel losses let the student drift a face's colour (eyes turning blue-grey,
washed-out skin: a held-out eye colour shift of ~7.9 Lab units against the mesh-warp
teacher's 2.8). This loss is the evaluation's colour shift (:mod:`mfs_fast.eval.appearance`)
made differentiable: the same regions, placed from each target's own mesh points, and the same
distance between mean CIE Lab colours, so what is trained is what is measured.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..eval.appearance import region_masks
from ..face.face_mesh import five_points

REGIONS = ("eyes", "skin")
MIN_EYE_DISTANCE = 4.0  # crop pixels: below this the points are missing (a packed cache's zeros)
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


def colour_regions(mesh_points: Tensor, size: int) -> Tensor:
    """M x 468 x 2 mesh points (crop pixels) -> M x 2 x S x S float masks of the eye and skin
    regions, exactly the evaluation's (:func:`mfs_fast.eval.appearance.region_masks`); all
    zero for a face without usable points."""
    masks = np.zeros((len(mesh_points), len(REGIONS), size, size), np.float32)
    for i, points in enumerate(mesh_points.numpy()):
        five = five_points(points)
        if np.isfinite(five).all() and np.linalg.norm(five[1] - five[0]) >= MIN_EYE_DISTANCE:
            regions = region_masks(five, (size, size))
            masks[i] = np.stack([regions[name] for name in REGIONS])
    return torch.from_numpy(masks)


def colour_shift_loss(result: Tensor, target: Tensor, regions: Tensor, margin: float = 0.0) -> Tensor:
    """Per sample, the mean over regions of the Lab distance between the mean colours of
    result and target inside each region, less ``margin`` (a shift that small is free: colour
    is also an identity cue, so the loss need not pull it below what looks right) (N; regions
    N x R x H x W). A region with no pixels (a face partly outside the crop) counts as no shift."""
    lab_result, lab_target = rgb_to_lab(result.float()), rgb_to_lab(target.float())
    area = regions.sum(dim=(2, 3))  # N x R
    def region_means(lab: Tensor) -> Tensor:
        return torch.einsum("nchw,nrhw->nrc", lab, regions) / area.clamp_min(1.0).unsqueeze(-1)
    difference = region_means(lab_result) - region_means(lab_target)
    distance = ((difference.pow(2).sum(dim=-1) + 1e-6).sqrt() - margin).clamp_min(0.0)  # smooth at 0 shift
    present = (area >= 4).float()
    return (distance * present).sum(dim=1) / present.sum(dim=1).clamp_min(1.0)


__all__ = ["REGIONS", "colour_regions", "colour_shift_loss", "rgb_to_lab"]
