"""The PyTorch reference as a backend (channels_last: 1.4-1.8x faster than NCHW on CPU)."""

from __future__ import annotations

import numpy as np
import torch

from ..models import FaceSwapModels, IdentityWeights
from ._registry import register_backend
from .base import checked_batch


@register_backend("torch")
class TorchBackend:
    name = "torch"

    def __init__(self, models: FaceSwapModels, threads: int | None = None, channels_last: bool = True) -> None:
        self.idn = models.idn.eval()
        self.channels_last = channels_last
        self.weights: IdentityWeights | None = None
        if threads:
            torch.set_num_threads(threads)

    def set_identity(self, weights: IdentityWeights) -> None:
        self.weights = weights

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(checked_batch(batch, self.weights is not None))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        result, mask = self.idn(x, self.weights)
        return result.contiguous().numpy(), mask.contiguous().numpy()
