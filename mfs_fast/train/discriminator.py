"""A small multi-scale patch discriminator (pix2pixHD style, spectral-normalised convs)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


def _patch_discriminator(channels: int, layers: int) -> nn.Sequential:
    blocks, c_in = [], 3
    for i in range(layers):
        c_out = channels * 2**i
        blocks += [spectral_norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        c_in = c_out
    blocks.append(spectral_norm(nn.Conv2d(c_in, 1, 3, padding=1)))
    return nn.Sequential(*blocks)


class MultiScaleDiscriminator(nn.Module):
    """Patch logits at ``scales`` resolutions (full, 1/2, ...): one list entry per scale."""

    def __init__(self, scales: int = 2, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        self.nets = nn.ModuleList(_patch_discriminator(channels, layers) for _ in range(scales))

    def forward(self, image: Tensor) -> list[Tensor]:
        x, out = image * 2.0 - 1.0, []
        for i, net in enumerate(self.nets):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(net(x))
        return out
