"""What the CPU and CUDA fused engines share: the folded heads, and the identity hand-over.

Both :class:`~mfs_fast.backends.fused.FusedIDN` (C++ kernels) and
:class:`~mfs_fast.backends.fused_cuda.CudaFusedIDN` (CUDA kernels) are built once from a
:class:`FaceSwapModels`: the fixed heads are read from ``models.idn`` with every BatchNorm
folded into its conv, and the nine base pointwise kernels ``W`` from ``models.iin``, packed
once by the engine. A new identity then only hands over O(C) data per layer:

* ``pointwise="factored"`` (default): depthwise kernels and the modulation vectors
  ``s`` (scale) and ``d`` (demod) of :class:`PointwiseModulation`;
  ``y[o] = d[o] * sum_i W[o, i] * s[i] * x[i]`` (``s`` folded into the depthwise kernel);
* ``pointwise="modulated"`` (CPU only): depthwise kernels and the fused ``W~`` (packed per identity).

One native engine exists per input size (made on first use); its buffers are reused. The
subclasses differ only in how an engine is made (:meth:`FusedEngines._new_engine`) and run
(:meth:`FusedEngines._run_engine`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..models import FaceSwapModels, IdentityWeights
from ..models.identity_weights import PointwiseModulation
from .base import checked_batch

POINTWISE_FORMS = ("factored", "modulated")


def _array(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of ``bn(conv(x))`` as one conv, folded in float64."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is not None:
        g = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
        w = w * g.reshape(-1, *([1] * (w.dim() - 1)))
        b = (b - bn.running_mean.detach().double()) * g + bn.bias.detach().double()
    return _array(w.float()), _array(b.float())


def head_weights(models: FaceSwapModels) -> dict[str, np.ndarray]:
    """The IDN's fixed heads as the native engines take them (BatchNorm folded)."""
    idn = models.idn
    heads: dict[str, np.ndarray] = {}
    for i in range(5):
        block = idn.mask[i]  # upsample, depthwise, pointwise, BN, LReLU
        heads[f"mask.{i}.depthwise"], heads[f"mask.{i}.depthwise_bias"] = fold_batchnorm(block[1], None)
        w, b = fold_batchnorm(block[2], block[3])
        heads[f"mask.{i}.pointwise"], heads[f"mask.{i}.pointwise_bias"] = w[:, :, 0, 0].copy(), b
    heads["mask.out.weight"], heads["mask.out.bias"] = fold_batchnorm(idn.mask[5], None)
    final = idn.final  # upsample, conv1x1, BN, LReLU, conv3x3, BN, LReLU, conv3x3, tanh
    w, heads["final.0.bias"] = fold_batchnorm(final[1], final[2])
    heads["final.0.weight"] = w[:, :, 0, 0].copy()
    heads["final.1.weight"], heads["final.1.bias"] = fold_batchnorm(final[4], final[5])
    heads["final.2.weight"], heads["final.2.bias"] = fold_batchnorm(final[7], None)
    return heads


def _modulations(weights: IdentityWeights) -> tuple[PointwiseModulation, ...]:
    return (*weights.encoder_modulation, *weights.decoder_modulation)


class FusedEngines:
    """The per-size engine cache and the identity hand-over of a fused engine (see the module doc)."""

    name: str

    def __init__(self, models: FaceSwapModels, pointwise: str = "factored") -> None:
        if pointwise not in POINTWISE_FORMS:
            raise ValueError(f"pointwise must be one of {POINTWISE_FORMS}, got {pointwise!r}")
        self.pointwise = pointwise
        self._heads = head_weights(models)
        mods = (*models.iin.encoder_modulation, *models.iin.decoder_modulation)
        self._base_params = [m.weight for m in mods]  # to recognise identities made by this IIN
        self._bases = [_array(p.reshape(p.shape[0], -1)) for p in self._base_params]
        self._engines: dict[tuple[int, int, int], object] = {}  # (height, width, replica)
        self._identity: tuple | None = None  # the arrays last given to set_identity, for new sizes
        self._custom_bases: dict[int, np.ndarray] = {}

    def _new_engine(self, height: int, width: int):
        """A native engine for one input size (the subclass's kernels)."""
        raise NotImplementedError

    def _run_engine(self, engine, batch: np.ndarray, faces: np.ndarray, masks: np.ndarray) -> None:
        """Run ``engine`` on ``batch`` into the preallocated ``faces`` and ``masks``."""
        raise NotImplementedError

    def _engine(self, height: int, width: int, replica: int = 0):
        """The engine for one input size; ``replica`` > 0: another one (scratch buffers of its own,
        the same identity) for a second thread, as one engine runs one call at a time."""
        key = (height, width, replica)
        engine = self._engines.get(key)
        if engine is None:
            engine = self._new_engine(height, width)
            for layer, base in self._custom_bases.items():
                engine.set_base(layer, base)
            if self._identity is not None:
                self._apply(engine, self._identity)
            self._engines[key] = engine
        return engine

    def _apply(self, engine, identity: tuple) -> None:
        if self.pointwise == "factored":
            engine.set_identity_factored(*identity)
        else:
            engine.set_identity_modulated(*identity)

    def _check_bases(self, weights: IdentityWeights) -> None:
        """The factored form needs the identity's base W to be the packed one; repack if not."""
        for layer, mod in enumerate(_modulations(weights)):
            packed = self._custom_bases.get(layer, self._bases[layer])
            if self._base_params[layer].data_ptr() == mod.base.data_ptr() and layer not in self._custom_bases:
                continue
            base = _array(mod.base.reshape(mod.base.shape[0], -1))
            if np.array_equal(base, packed):
                continue
            self._custom_bases[layer] = base  # an identity from another IIN: repack this layer
            for engine in self._engines.values():
                engine.set_base(layer, base)

    def set_identity(self, weights: IdentityWeights) -> None:
        """Install a new identity in every engine made so far (and in later ones): O(C) data per layer."""
        depthwise = [_array(t) for t in (*weights.encoder_depthwise, *weights.decoder_depthwise)]
        if self.pointwise == "factored":
            self._check_bases(weights)
            mods = _modulations(weights)
            identity = (depthwise, [_array(m.scale) for m in mods], [_array(m.demod) for m in mods])
        else:
            pointwise = [_array(t) for t in (*weights.encoder_pointwise, *weights.decoder_pointwise)]
            identity = (depthwise, pointwise)
        for engine in self._engines.values():
            self._apply(engine, identity)
        self._identity = identity

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aligned RGB float32 batch N x 3 x S x S in [0, 1] -> (faces N x 3 x S x S, masks N x 1 x S x S)."""
        batch = checked_batch(batch, self._identity is not None)
        n, _, h, w = batch.shape
        engine = self._engine(h, w)  # ValueError from the binding for sides not multiple of 32
        faces = np.empty((n, 3, h, w), np.float32)
        masks = np.empty((n, 1, h, w), np.float32)
        self._run_engine(engine, batch, faces, masks)
        return faces, masks
