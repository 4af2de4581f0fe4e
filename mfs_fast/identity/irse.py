"""IR-SE ResNet identity network (ArcFace, IR-SE-101 in the official release).

Returns both the embedding z_id (before L2 normalisation) and the 512x7x7 feature map F_id
that the IIN predicts depthwise kernels from. Module names follow ``arcface.pdparams``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..preprocess import IDENTITY_INPUT_SIZE as INPUT_SIZE

IRSE101_LAYERS = (3, 4, 23, 3)
EMBEDDING_DIM = 512


class SqueezeExcite(nn.Module):
    """Channel gating: global pool -> FC(C/r) -> PReLU -> FC(C) -> sigmoid (keys se.fc.0/1/2)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.PReLU(),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        gate = self.fc(x.mean(dim=(2, 3)))
        return x * gate[:, :, None, None]


class IRBlock(nn.Module):
    """Pre-BN improved residual block with SE; one PReLU shared by both activations."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_in, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.se = SqueezeExcite(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.se(self.bn2(self.conv2(out)))
        residual = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + residual)


class IRSEResNet(nn.Module):
    """IR-SE ResNet for 112x112 input: ``forward(x) -> (z_id, F_id)``."""

    def __init__(self, layers: tuple[int, ...] = IRSE101_LAYERS) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, bias=False)  # no padding: 112 -> 110
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(2, 2)
        widths = (64, 128, 256, 512)
        c_in = 64
        for index, (width, blocks) in enumerate(zip(widths, layers), start=1):
            stride = 1 if index == 1 else 2
            stage = [IRBlock(c_in, width, stride)] + [IRBlock(width, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*stage))
            c_in = width
        self.bn2 = nn.BatchNorm2d(512)
        self.fc = nn.Linear(512 * 7 * 7, EMBEDDING_DIM)
        self.bn3 = nn.BatchNorm1d(EMBEDDING_DIM)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"identity net expects {INPUT_SIZE}x{INPUT_SIZE} input, got {tuple(x.shape)}")
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        feature_map = self.bn2(x)
        embedding = self.bn3(self.fc(feature_map.flatten(1)))
        return embedding, feature_map


def l2_normalize(embedding: Tensor) -> Tensor:
    """Divide by the L2 norm over dim 1 (no epsilon, as the official code does)."""
    return embedding / embedding.norm(p=2, dim=1, keepdim=True)
