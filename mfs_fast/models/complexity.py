"""Parameters and multiply-accumulates, measured from the models themselves.

MACs are counted by intercepting every ATen op a forward pass runs (so nothing is typed in):
convolutions and matrix products count one MAC per weight use, bilinear upsampling four per
output value, and element-wise ops (normalisation, BatchNorm, activations, blending) one per
output value. Pooling, concatenation and reshapes count zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..identity.irse import INPUT_SIZE
from .bundle import FaceSwapModels

aten = torch.ops.aten

_ELEMENTWISE = {
    aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor, aten.rsub.Scalar,
    aten.add.Scalar, aten.mul.Scalar, aten.div.Scalar, aten.sub.Scalar, aten.pow.Tensor_Scalar,
    aten.leaky_relu.default, aten.sigmoid.default, aten.tanh.default, aten.rsqrt.default,
    aten._prelu_kernel.default, aten._native_batch_norm_legit_no_training.default,
    aten.native_batch_norm.default, aten.linalg_vector_norm.default,
}
_REDUCTIONS = {aten.sum.dim_IntList, aten.mean.dim}


def _first_tensor(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _op_macs(func, args, out) -> int:
    result = _first_tensor(out)
    if func is aten.convolution.default:
        weight = args[1]
        return result.numel() * math.prod(weight.shape[1:])
    if func is aten.addmm.default:
        return args[1].shape[0] * args[1].shape[1] * args[2].shape[1]
    if func is aten.mm.default:
        return args[0].shape[0] * args[0].shape[1] * args[1].shape[1]
    if func in (aten.upsample_bilinear2d.vec, aten.upsample_bilinear2d.default):
        return 4 * result.numel()
    if func in _ELEMENTWISE:
        return result.numel()
    if func in _REDUCTIONS:
        return args[0].numel()
    return 0


class MacCounter(TorchDispatchMode):
    """``with MacCounter() as c: model(x)`` then ``c.total`` holds the MACs of that pass."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.total += _op_macs(func, args, out)
        return out


def count_macs(fn: Callable[[], object]) -> int:
    with torch.no_grad(), MacCounter() as counter:
        fn()
    return counter.total


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def foldable_batchnorm_parameters(module: nn.Module) -> int:
    """Affine BN parameters that vanish when each BN is folded into the biased conv before it."""
    removable = 0
    for seq in module.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq)
        for prev, layer in zip(children, children[1:]):
            if isinstance(layer, nn.BatchNorm2d) and isinstance(prev, nn.Conv2d) and prev.bias is not None:
                removable += layer.weight.numel() + layer.bias.numel()
    return removable


@dataclass(frozen=True)
class ComponentCost:
    name: str
    params: int  # trainable parameters as stored
    deployed_params: int  # with BatchNorm folded into the preceding conv (what inference runs)
    macs: int
    when: str  # how often it runs


def component_costs(models: FaceSwapModels, size: int = 224) -> list[ComponentCost]:
    """Cost of each component for one source and one size x size target frame."""
    models.eval()
    source = torch.rand(1, 3, INPUT_SIZE, INPUT_SIZE)
    target = torch.rand(1, 3, size, size)
    with torch.no_grad():
        embedding, feature_map = models.identity(source)
        weights = models.iin(embedding / embedding.norm(dim=1, keepdim=True), feature_map)
        deepest = models.idn.encode(target, weights)[-1]
    mask_macs = count_macs(lambda: models.idn.mask(deepest))
    idn_macs = count_macs(lambda: models.idn(target, weights)) - mask_macs
    idn_params = weights.num_parameters() + count_parameters(models.idn.final)
    idn_deployed = idn_params - foldable_batchnorm_parameters(models.idn.final)
    mask_params = count_parameters(models.idn.mask)
    return [
        ComponentCost("IDN (per-identity kernels + output head)", idn_params, idn_deployed, idn_macs, "every frame"),
        ComponentCost("fusion mask head", mask_params, mask_params - foldable_batchnorm_parameters(models.idn.mask),
                      mask_macs, "every frame"),
        ComponentCost("IIN (weights prediction + modulation)", count_parameters(models.iin),
                      count_parameters(models.iin) - foldable_batchnorm_parameters(models.iin),
                      count_macs(lambda: models.iin(embedding, feature_map)), "once per source"),
        ComponentCost("identity net (IR-SE-101)", count_parameters(models.identity),
                      count_parameters(models.identity), count_macs(lambda: models.identity(source)),
                      "once per source"),
    ]
