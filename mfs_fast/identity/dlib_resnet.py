"""The dlib face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

A port built from the layer records of the ``.dat`` file (:mod:`.dlib_format`), so it needs
no dlib at run time and is differentiable (training uses it as the identity loss). The
network: 150x150 RGB chip in 0..255, ``(x - mean) / 256``; 7x7/2 conv, affine (folded batch
norm), ReLU, 3x3/2 max-pool; residual stages 32 x3, 64 (down + 3), 128 (down + 2),
256 (down + 2), 256 (down); global average pool; a 256 -> 128 matrix. A down block's first
conv has stride 2 and no padding, its skip a 2x2/2 average pool; ``add_prev`` zero-pads the
smaller operand (channels, and bottom/right rows and columns) before adding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError
from .dlib_format import DlibLayer, DlibNetFile, read_dlib_net

CHIP_SIZE = 150
EMBEDDING_DIM = 128
NUM_PARAMETERS = 5_614_592


def _conv_affine(conv_layer: DlibLayer, affine_layer: DlibLayer, in_channels: int) -> nn.Conv2d:
    """A ``con_`` layer with the ``affine_`` layer after it folded in (w * gamma, b * gamma +
    beta): dlib's affine is itself a folded batch norm, and as two elementwise passes over
    every conv output it cost ~20 % of a forward + backward at batch 8 (bench/RESULTS.md)."""
    filters, nr, nc, stride_y, stride_x, pad_y, pad_x = conv_layer.ints
    params = torch.from_numpy(conv_layer.arrays[0]).double()
    weight_count = filters * in_channels * nr * nc
    if params.numel() != weight_count + filters:
        raise CheckpointError(f"dlib conv with {params.numel()} parameters does not fit {filters}x{in_channels}x{nr}x{nc}")
    affine = torch.from_numpy(affine_layer.arrays[0]).double()
    if affine.numel() != 2 * filters:
        raise CheckpointError(f"dlib affine layer has {affine.numel()} parameters, expected {2 * filters}")
    gamma, beta = affine[:filters], affine[filters:]
    conv = nn.Conv2d(in_channels, filters, (nr, nc), stride=(stride_y, stride_x), padding=(pad_y, pad_x))
    conv.weight.data.copy_(params[:weight_count].view(filters, in_channels, nr, nc) * gamma.view(-1, 1, 1, 1))
    conv.bias.data.copy_(params[weight_count:] * gamma + beta)
    return conv


def _add_prev(a: Tensor, b: Tensor) -> Tensor:
    """dlib's ``add_prev``: the smaller operand is zero-padded (channels, bottom, right)."""
    if a.shape == b.shape:
        return a + b
    channels, height, width = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: Tensor) -> Tensor:
        return F.pad(t, (0, width - t.shape[3], 0, height - t.shape[2], 0, channels - t.shape[1]))

    return pad(a) + pad(b)


class _ResidualBlock(nn.Module):
    """conv -> affine -> relu -> conv -> affine (each affine folded into its conv), plus the
    (pooled, when down) input, relu."""

    def __init__(self, layers: list[DlibLayer], in_channels: int) -> None:
        super().__init__()
        self.down = layers[5].tag == "avg_pool_2"
        self.conv1 = _conv_affine(layers[0], layers[1], in_channels)
        channels = self.conv1.out_channels
        self.conv2 = _conv_affine(layers[3], layers[4], channels)
        if self.down:
            window_y, window_x, stride_y, stride_x, pad_y, pad_x = layers[5].ints
            self.pool = nn.AvgPool2d((window_y, window_x), (stride_y, stride_x), (pad_y, pad_x))
        self.out_channels = channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        return F.relu(_add_prev(y, self.pool(x) if self.down else x))


@dataclass
class DlibFeatures:
    """The 128-d descriptor and the spatial maps on the way to it (outputs of each stage)."""

    descriptor: Tensor
    pooled: Tensor
    maps: dict[str, Tensor]


class DlibResNet(nn.Module):
    """``forward(chips)``: RGB N x 3 x 150 x 150 in 0..255 -> :class:`DlibFeatures`."""

    def __init__(self, net: DlibNetFile) -> None:
        super().__init__()
        layers = net.layers
        tags = [layer.tag for layer in layers]
        if tags[:4] != ["con_4", "affine_", "relu_", "max_pool_2"] or tags[-2:] != ["avg_pool_2", "fc_2"]:
            raise CheckpointError(f"unexpected dlib network layout: starts {tags[:4]}, ends {tags[-2:]}")
        self.register_buffer("mean", torch.tensor(net.input_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.input_size = net.input_size
        self.stem_conv = _conv_affine(layers[0], layers[1], 3)
        window_y, window_x, stride_y, stride_x, pad_y, pad_x = layers[3].ints
        self.stem_pool = nn.MaxPool2d((window_y, window_x), (stride_y, stride_x), (pad_y, pad_x))
        blocks, channels, i = [], self.stem_conv.out_channels, 4
        while i < len(layers) - 2:
            length = 8 if layers[i + 5].tag == "avg_pool_2" else 7
            expected = ["con_4", "affine_", "relu_", "con_4", "affine_"] + (["avg_pool_2"] if length == 8 else []) + ["add_prev_", "relu_"]
            if tags[i:i + length] != expected:
                raise CheckpointError(f"unexpected dlib residual block at layer {i}: {tags[i:i + length]}")
            blocks.append(_ResidualBlock(layers[i:i + length], channels))
            channels, i = blocks[-1].out_channels, i + length
        self.blocks = nn.ModuleList(blocks)
        self._ends = self._stage_ends()  # block index -> map name; the input size is fixed
        pool = layers[-2].ints
        if pool[:2] != [0, 0]:
            raise CheckpointError(f"expected a global average pool before the descriptor, got window {pool[:2]}")
        matrix = torch.from_numpy(layers[-1].arrays[0]).reshape(layers[-1].ints[1], layers[-1].ints[0])
        self.register_buffer("projection", matrix.clone())  # num_inputs x num_outputs
        self.eval().requires_grad_(False)
        # kernels stored channels-last like the activations: oneDNN otherwise reorders every
        # kernel on every call (~5 % of a forward + backward at batch 8)
        self.to(memory_format=torch.channels_last)

    @classmethod
    def from_file(cls, path: str | Path) -> "DlibResNet":
        return cls(read_dlib_net(path))

    def stage_names(self) -> list[str]:
        """Names of the maps :meth:`forward` returns: the output of each stage, e.g. ``256x4x4``."""
        return list(self._ends.values())

    def _stage_ends(self) -> dict[int, str]:
        """Block index -> map name for the last block before each down block (and the last)."""
        ends, size = {}, self.input_size[0]
        sizes = self._block_sizes(size)
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            if last or self.blocks[i + 1].down:
                ends[i] = f"{block.out_channels}x{sizes[i]}x{sizes[i]}"
        return ends

    def _block_sizes(self, size: int) -> list[int]:
        conv, pool = self.stem_conv, self.stem_pool
        size = (size + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        size = (size + 2 * pool.padding[0] - pool.kernel_size[0]) // pool.stride[0] + 1
        sizes = []
        for block in self.blocks:
            if block.down:
                c = block.conv1
                conv_size = (size + 2 * c.padding[0] - c.kernel_size[0]) // c.stride[0] + 1
                pool_size = (size + 2 * block.pool.padding[0] - block.pool.kernel_size[0]) // block.pool.stride[0] + 1
                size = max(conv_size, pool_size)
            sizes.append(size)
        return sizes

    def forward(self, chips: Tensor) -> DlibFeatures:
        if chips.dim() != 4 or chips.shape[1] != 3 or tuple(chips.shape[2:]) != tuple(self.input_size):
            raise ValueError(f"dlib ResNet takes N x 3 x {self.input_size[0]} x {self.input_size[1]} RGB chips, got {tuple(chips.shape)}")
        # channels-last: oneDNN's convolutions (and their backward) are ~5x faster so on CPU
        x = ((chips - self.mean) * (1.0 / 256.0)).contiguous(memory_format=torch.channels_last)
        x = self.stem_pool(F.relu(self.stem_conv(x)))
        maps = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._ends:
                maps[self._ends[i]] = x
        pooled = x.mean(dim=(2, 3))
        return DlibFeatures(pooled @ self.projection, pooled, maps)
