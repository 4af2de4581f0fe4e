"""Layer shapes and small building blocks shared by the IDN and the IIN.

The channel plan is the official MobileFaceSwap one (see DESIGN.md section 2); both networks
derive their layers from these constants so the two can never disagree.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LEAKY_SLOPE = 0.1
STYLE_DIM = 512  # ArcFace embedding size and feature-map channels
# IDN encoder: stage i maps ENCODER_CHANNELS[i] -> ENCODER_CHANNELS[i + 1] at stride 2.
ENCODER_CHANNELS = (3, 32, 64, 128, 256, 512)
# IDN decoder: stage i maps DECODER_IN[i] -> DECODER_OUT[i] after a 2x upsample.
DECODER_IN = (512, 512, 256, 128)
DECODER_OUT = (256, 128, 64, 32)
# Fusion-mask head: 5 upsampling blocks, then a 3x3 conv to one channel.
MASK_CHANNELS = (512, 128, 64, 32, 8, 2)
ENCODER_KERNEL = 4  # depthwise kernel of the stride-2 encoder stages
DECODER_KERNEL = 3  # depthwise kernel of the decoder stages


def upsample2x() -> nn.Upsample:
    """Bilinear 2x upsampling with align_corners=True, as every official upsample is."""
    return nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=True)


def leaky_relu() -> nn.LeakyReLU:
    return nn.LeakyReLU(LEAKY_SLOPE)


NARROW_CHANNELS = 8  # batch norms over at most this many channels run in the plain layout


class NarrowBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d that normalises a channels-last input with few channels in the plain
    layout: PyTorch's CPU kernel for that case is ~8x slower than the plain one (2 x 3 x 224 x
    224, forward + backward: 8.4 vs 1.1 ms with the two layout copies; bench in bench/RESULTS.md
    2026-12-06), and the IDN's heads end in 2-, 3- and 8-channel norms at full resolution.
    Same parameters, buffers and state-dict keys as nn.BatchNorm2d."""

    def forward(self, x: Tensor) -> Tensor:
        if self.num_features > NARROW_CHANNELS or x.dim() != 4 or x.is_contiguous() \
                or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)


def conv_bn_act(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    """conv (with bias, 'same' padding) -> BatchNorm -> LeakyReLU, as a flat layer list."""
    return [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2), NarrowBatchNorm2d(c_out), leaky_relu()]


def separable_block(c_in: int, c_out: int) -> nn.Sequential:
    """Upsample -> depthwise 3x3 -> pointwise 1x1 -> BN -> LeakyReLU (fusion-mask head block).

    Indices match the official checkpoint keys (``mask.<i>.1`` depthwise, ``.2`` pointwise,
    ``.3`` BatchNorm).
    """
    return nn.Sequential(
        upsample2x(),
        nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in),
        nn.Conv2d(c_in, c_out, 1),
        NarrowBatchNorm2d(c_out),
        leaky_relu(),
    )
