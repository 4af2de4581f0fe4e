"""The paper's losses, with the offline identity net standing in where weights are missing.

- identity: 1 - cos(id(source), id(result));
- reconstruction: L1 to the target where the target shows the source's person;
- perceptual: L1 between the identity net's intermediate maps (VGG/ImageNet weights are not
  available offline, so the dlib ResNet's 32x35x35, 64x17x17 and 128x8x8 maps stand in);
- weak attribute: L1 of the lowest of those maps (32x35x35) to the target on every pair, so
  pose, expression and lighting follow the target when no teacher says what they should be;
- weak mask: the fusion mask should be 0 on background (outside the face-mesh hull);
- adversarial: hinge loss with a multi-scale patch discriminator;
- kernel gain: the IIN's predicted depthwise kernels kept near He gain. The IDN's main path
  has no normalisation until the output head's batch norm, so the whole U-Net is invariant to
  the kernels' scale during training and Adam's noise lets that scale drift without bound
  (observed: activations ~1e19, batch-norm running variance inf, colour blobs in eval mode);
- distillation: L1 + perceptual to a teacher's output, per sample weighted by
  alpha = cos(id(source), id(teacher_out))^2 x Q(teacher_out);
- detail: L1 between the high-pass bands (image minus its Gaussian blur) of the result and the
  *target* inside the target's face hull. Why: a student that cannot warp pixels regresses the
  teacher's fine detail (the source's skin and lashes, placed by a mesh warp) to its mean, a
  blur (measured: a fifth of the target's Laplacian variance); the target's own detail is in
  the student's input and is what a sharp swap keeps. With it, distillation may compare low-pass
  versions only, so the two losses do not pull the same band two ways.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

PERCEPTUAL_MAPS = ("32x35x35", "64x17x17", "128x8x8")
ATTRIBUTE_MAP = "32x35x35"


def identity_loss(source_embedding: Tensor, result_embedding: Tensor) -> Tensor:
    """Per sample 1 - cosine (embeddings already L2-normalised)."""
    return 1.0 - (source_embedding * result_embedding).sum(dim=1)


def per_sample_l1(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).abs().flatten(1).mean(dim=1)


def perceptual_loss(maps_a: dict[str, Tensor], maps_b: dict[str, Tensor], names=PERCEPTUAL_MAPS) -> Tensor:
    """Per sample mean L1 over the identity net's intermediate maps."""
    return sum(per_sample_l1(maps_a[n], maps_b[n]) for n in names) / len(names)


def weak_mask_loss(mask: Tensor, face_mask: Tensor, face_weight: float = 0.0) -> Tensor:
    """Per sample mean of the fusion mask over the background (outside the face hull), plus
    ``face_weight`` x the mean of (1 - mask) over the face: without a teacher, reconstruction
    pairs alone make "mask 0 everywhere" (result = target) the easy optimum and the identity
    loss then has nothing to act on (observed: mask mean 0.045 after 1,400 steps)."""
    background = 1.0 - face_mask
    loss = (mask * background).flatten(1).sum(dim=1) / background.flatten(1).sum(dim=1).clamp_min(1.0)
    if face_weight:
        face = ((1.0 - mask) * face_mask).flatten(1).sum(dim=1) / face_mask.flatten(1).sum(dim=1).clamp_min(1.0)
        loss = loss + face_weight * face
    return loss


KERNEL_GAIN = 2.0  # He: a leaky ReLU halves the variance, the kernel doubles it back
KERNEL_GAIN_SLACK = math.log(2.0)  # free within [gain / 2, gain x 2] (fresh IINs give 0.9-2.3)


def kernel_gain_loss(depthwise: list[Tensor], gain: float = KERNEL_GAIN) -> Tensor:
    """Mean over layers of relu(|log(mean_c ||k_c||^2 / gain)| - log 2)^2, depthwise kernels C x 1 x k x k."""
    log_ratio = (kernel_gains(depthwise) / gain).clamp_min(1e-12).log()
    return F.relu(log_ratio.abs() - KERNEL_GAIN_SLACK).pow(2).mean()


def kernel_gains(depthwise: list[Tensor]) -> Tensor:
    """Per layer, mean_c ||k_c||^2 of depthwise kernels C x 1 x k x k (the variance they pass on)."""
    return torch.stack([k.float().pow(2).flatten(1).sum(dim=1).mean() for k in depthwise])


def distillation_weight(source_embedding: Tensor, teacher_embedding: Tensor, quality: Tensor | None) -> Tensor:
    """alpha = cos(z_id(source), z_id(teacher_out))^2 x Q(teacher_out), per sample, no gradient."""
    alpha = (source_embedding * teacher_embedding).sum(dim=1).clamp_min(0.0) ** 2
    return (alpha * quality if quality is not None else alpha).detach()


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of N x C x H x W (radius 3 sigma, reflected borders)."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def high_pass(images: Tensor, sigma: float) -> Tensor:
    return images - gaussian_blur(images, sigma)


LUMA_RGB = (0.299, 0.587, 0.114)  # BT.601, as mfs_fast.face.paste.LUMA_BGR in RGB order


def limit_colour(change: Tensor, weights: Tensor, chroma: float = 1.0, brightness: float = 1.0) -> Tensor:
    """The change (N x 3 x H x W, RGB) with only ``chroma`` of its colour part and ``brightness`` of
    its mean luminance over ``weights`` (N x 1 x H x W); its luminance pattern is kept whole.
    The torch twin of :func:`mfs_fast.face.paste.limit_colour` (see there why)."""
    if chroma == 1.0 and brightness == 1.0:
        return change
    luma = (change * change.new_tensor(LUMA_RGB).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    limited = luma + chroma * (change - luma)
    if brightness != 1.0:
        mean = (luma * weights).sum(dim=(2, 3), keepdim=True) / weights.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        limited = limited - (1.0 - brightness) * mean
    return limited


def with_target_detail(result: Tensor, target: Tensor, mask: Tensor, sigma: float, chroma: float = 1.0,
                       brightness: float = 1.0) -> Tensor:
    """``target + mask * limit_colour(blur(result - target))``: the result as
    Swapper(detail=sigma, chroma=, brightness=) pastes it (mfs_fast/face/paste.py), its band finer
    than ``sigma`` crop pixels (0: none) and the colour the paste leaves out taken from the target."""
    change = result - target
    if sigma > 0:
        change = gaussian_blur(change, sigma)
    return target + mask * limit_colour(change, mask, chroma, brightness)


def detail_loss(result: Tensor, target: Tensor, face_mask: Tensor, sigma: float) -> Tensor:
    """Per sample mean |high_pass(result) - high_pass(target)| over the face hull (N x 1 x H x W)."""
    diff = (high_pass(result, sigma) - high_pass(target, sigma)).abs().mean(dim=1, keepdim=True)
    return (diff * face_mask).flatten(1).sum(dim=1) / face_mask.flatten(1).sum(dim=1).clamp_min(1.0)


def masked_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean of per-sample values; 0 (keeping the graph) when no weight is set."""
    total = weights.sum()
    return (values * weights).sum() / total.clamp_min(1e-8)


def hinge_discriminator_loss(real_logits: list[Tensor], fake_logits: list[Tensor]) -> Tensor:
    return sum(F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean() for r, f in zip(real_logits, fake_logits))


def hinge_generator_loss(fake_logits: list[Tensor]) -> Tensor:
    return sum(-f.mean() for f in fake_logits)


__all__ = [
    "ATTRIBUTE_MAP",
    "PERCEPTUAL_MAPS",
    "detail_loss",
    "distillation_weight",
    "gaussian_blur",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "high_pass",
    "identity_loss",
    "kernel_gain_loss",
    "kernel_gains",
    "masked_mean",
    "per_sample_l1",
    "perceptual_loss",
    "weak_mask_loss",
]
