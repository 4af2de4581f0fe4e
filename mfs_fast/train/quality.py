"""The quality regressor Q: scores a teacher's output in [0, 1] by how far into the teacher's
training it looks to have been produced (the paper's loss reweighting).

It trains from *snapshots*: outputs on a fixed probe set saved every ``snapshot_every`` steps
of a teacher's training run (``<output>/snapshots/step_XXXXXXX/*.png``), each labelled with its
progress step / last step. A ResNet-18 layout (BasicBlocks 2-2-2-2, widths 64-512, written
here: torchvision is not installable beside torch 2.13) with a sigmoid head.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..atomic import atomic_path
from ..errors import MfsError
from ..preprocess import bgr_to_rgb

SNAPSHOT_DIR = re.compile(r"step_(\d+)$")
INPUT_SIZE = 112


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = None
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class QualityRegressor(nn.Module):
    """``forward(images)``: RGB N x 3 x S x S in [0, 1] -> N scores in [0, 1]."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        stages, c_in = [], widths[0]
        for i, width in enumerate(widths):
            stages += [_BasicBlock(c_in, width, 1 if i == 0 else 2), _BasicBlock(width, width, 1)]
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, 1)

    def forward(self, images: Tensor) -> Tensor:
        x = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        x = self.stages(self.stem((x - 0.5) / 0.5))
        return torch.sigmoid(self.head(x.mean(dim=(2, 3)))[:, 0])


def read_snapshots(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 N x S x S x 3 images, progress labels in [0, 1]) from a snapshots folder."""
    folder = Path(folder)
    steps = sorted((int(m.group(1)), d) for d in folder.glob("step_*") if (m := SNAPSHOT_DIR.search(d.name)))
    if len(steps) < 2:
        raise MfsError(f"{folder}: need snapshots from at least 2 steps (step_XXXXXXX folders), found {len(steps)}")
    last = steps[-1][0] or 1
    images, labels = [], []
    for step, directory in steps:
        for png in sorted(directory.glob("*.png")):
            image = cv2.imread(str(png))
            if image is not None:
                images.append(bgr_to_rgb(image))
                labels.append(step / last)
    return np.stack(images), np.array(labels, np.float32)


def save_quality_model(model: QualityRegressor, path: str | Path) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))


def load_quality_model(path: str | Path) -> QualityRegressor:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MfsError(f"quality model not found: {path}")
    model = QualityRegressor()
    model.load_state_dict(load_file(str(path)))
    return model.eval().requires_grad_(False)
