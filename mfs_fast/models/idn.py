"""The Identity-aware Dynamic Network (IDN): the only network that runs per frame.

Its depthwise and pointwise kernels come from an :class:`IdentityWeights` (made once per
source by the IIN); its fixed parts are the output head (``final``) and the weakly-semantic
fusion-mask head (``mask``), both loaded from the official checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .identity_weights import IdentityWeights
from .layers import (
    DECODER_IN,
    DECODER_KERNEL,
    DECODER_OUT,
    ENCODER_CHANNELS,
    ENCODER_KERNEL,
    LEAKY_SLOPE,
    MASK_CHANNELS,
    conv_bn_act,
    separable_block,
    upsample2x,
)


def build_output_head(c_in: int = DECODER_OUT[-1]) -> nn.Sequential:
    """upsample, 1x1 conv + BN + LReLU, 3x3 conv + BN + LReLU, 3x3 conv, tanh (keys final.1..7)."""
    hidden = c_in // 4
    return nn.Sequential(
        upsample2x(),
        *conv_bn_act(c_in, hidden, 1),
        *conv_bn_act(hidden, 3, 3),
        nn.Conv2d(3, 3, 3, padding=1),
        nn.Tanh(),
    )


def build_mask_head() -> nn.Sequential:
    """Five separable upsampling blocks 512->...->2, then conv3x3 2->1 and a sigmoid."""
    blocks = [separable_block(a, b) for a, b in zip(MASK_CHANNELS[:-1], MASK_CHANNELS[1:])]
    return nn.Sequential(*blocks, nn.Conv2d(MASK_CHANNELS[-1], 1, 3, padding=1), nn.Sigmoid())


class IDN(nn.Module):
    """U-Net of depthwise-separable convs whose kernels are supplied per identity.

    ``forward(image, weights)`` takes an aligned RGB batch in [0, 1] (N x 3 x S x S, S a
    multiple of 32) and returns ``(result, mask)``: the swapped face already blended over
    the input by the fusion mask, and that mask (N x 1 x S x S).
    """

    def __init__(self) -> None:
        super().__init__()
        self.final = build_output_head()
        self.mask = build_mask_head()
        self.upsample = upsample2x()

    def encode(self, image: Tensor, weights: IdentityWeights) -> list[Tensor]:
        x = (image - 0.5) / 0.5
        stages = []
        for depthwise, pointwise in zip(weights.encoder_depthwise, weights.encoder_pointwise):
            x = strided_depthwise(x, depthwise)
            x = F.leaky_relu(F.conv2d(x, pointwise), LEAKY_SLOPE)
            stages.append(x)
        return stages

    def decode(self, stages: list[Tensor], weights: IdentityWeights) -> Tensor:
        y = stages[-1]
        last = len(weights.decoder_depthwise) - 1
        for i, (depthwise, pointwise) in enumerate(zip(weights.decoder_depthwise, weights.decoder_pointwise)):
            y = self.upsample(y)
            y = F.conv2d(y, depthwise, padding=1, groups=depthwise.shape[0])
            y = F.leaky_relu(F.conv2d(y, pointwise), LEAKY_SLOPE)
            if i != last:  # skip from the encoder stage of the same resolution
                y = torch.cat((y, stages[-2 - i]), dim=1)
        return y

    def forward(self, image: Tensor, weights: IdentityWeights) -> tuple[Tensor, Tensor]:
        check_image_batch(image)
        stages = self.encode(image, weights)
        mask = self.mask(stages[-1].detach())
        face = (1.0 + self.final(self.decode(stages, weights))) / 2.0
        return face * mask + (1.0 - mask) * image, mask


def strided_depthwise(x: Tensor, kernel: Tensor) -> Tensor:
    """The encoder's 4x4 stride-2 depthwise conv, kept in float32 under CPU autocast: oneDNN's
    bf16 kernel for it is 4-6x slower than its float32 one, forward + backward (bench/RESULTS.md)."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(x.float(), kernel.float(), stride=2, padding=1, groups=kernel.shape[0])
    return F.conv2d(x, kernel, stride=2, padding=1, groups=kernel.shape[0])


def check_image_batch(image: Tensor) -> None:
    """Fail early, with the shapes, on input the U-Net cannot take."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"IDN expects an N x 3 x S x S RGB batch, got shape {tuple(image.shape)}")
    h, w = image.shape[-2:]
    if h % 32 or w % 32:
        raise ValueError(f"IDN input sides must be multiples of 32 (5 stride-2 stages), got {h}x{w}")


def idn_layer_shapes() -> dict[str, tuple[int, ...]]:
    """Shapes of the per-identity kernels the IDN consumes (names as IdentityWeights.tensors)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (c_in, c_out) in enumerate(zip(ENCODER_CHANNELS[:-1], ENCODER_CHANNELS[1:])):
        shapes[f"encoder.{i}.depthwise"] = (c_in, 1, ENCODER_KERNEL, ENCODER_KERNEL)
        shapes[f"encoder.{i}.pointwise"] = (c_out, c_in, 1, 1)
    for i, (c_in, c_out) in enumerate(zip(DECODER_IN, DECODER_OUT)):
        shapes[f"decoder.{i}.depthwise"] = (c_in, 1, DECODER_KERNEL, DECODER_KERNEL)
        shapes[f"decoder.{i}.pointwise"] = (c_out, c_in, 1, 1)
    return shapes
