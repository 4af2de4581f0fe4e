"""Batch-norm recalibration before export: make eval mode compute what training mode did.

Running statistics are an exponential average of batch statistics and lag the weights; worse,
a conv followed by BN is scale-invariant in training mode, so its output can grow without
bound (the starter run's output head reached ~1e19, its running variance overflowed to inf and
eval mode then returned a constant face). Before weights are written, every (conv, BN) pair
gets population statistics measured in float64 on real batches, and the conv is rescaled per
output channel so the statistics are O(1): the same function in training mode, now also in
eval mode and in fp32/fp16 storage.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn


def conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(conv, BN) pairs where the BN directly follows the conv inside an nn.Sequential."""
    pairs = []
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module)
            pairs += [(a, b) for a, b in zip(children, children[1:])
                      if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d)]
    return pairs


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, run_batches: Callable[[], Iterable[None]]) -> int:
    """Measure each pair's conv output statistics over ``run_batches()`` (which runs forward
    passes with ``model`` in training mode), rescale the convs and set the BN statistics.
    Returns the number of pairs recalibrated."""
    pairs = conv_bn_pairs(model)
    sums: dict[int, list] = {}

    def hook(index: int):
        def collect(_module, _inputs, output):
            x = output.detach().double().transpose(0, 1).reshape(output.shape[1], -1)
            entry = sums.setdefault(index, [0, 0.0, 0.0])
            entry[0] += x.shape[1]
            entry[1] = entry[1] + x.sum(dim=1)
            entry[2] = entry[2] + (x * x).sum(dim=1)
        return collect

    handles = [conv.register_forward_hook(hook(i)) for i, (conv, _) in enumerate(pairs)]
    try:
        for _ in run_batches():
            pass
    finally:
        for handle in handles:
            handle.remove()
    for i, (conv, bn) in enumerate(pairs):
        count, total, squares = sums[i]
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(0.0)
        scale = var.sqrt().clamp_min(1e-30)  # conv output / scale has unit variance
        conv.weight.div_(scale.to(conv.weight).reshape(-1, *([1] * (conv.weight.dim() - 1))))
        if conv.bias is not None:
            conv.bias.div_(scale.to(conv.bias))
        bn.running_mean.copy_((mean / scale).to(bn.running_mean))
        bn.running_var.copy_((var / (scale * scale)).to(bn.running_var))
    return len(pairs)
