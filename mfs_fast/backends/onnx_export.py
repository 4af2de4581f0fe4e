"""Export the IDN to ONNX with every identity-dependent kernel as a graph *input*.

The fixed parts (output head, fusion-mask head) are baked in as initializers; the 18
depthwise/pointwise kernels are inputs, so one exported graph serves every identity. Files
are cached on disk, keyed by a hash of the fixed weights, the opset and this package version.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from ..atomic import atomic_path
from ..models import IDN, idn_layer_shapes
from ._cache import OPSET, cache_dir, model_hash

IMAGE_INPUT = "image"
OUTPUTS = ("faces", "masks")


def kernel_input_names() -> list[str]:
    """Graph input names of the identity kernels, in IdentityWeights.tensors() order."""
    return list(idn_layer_shapes())


class _KernelsAsInputs(nn.Module):
    def __init__(self, idn: IDN) -> None:
        super().__init__()
        self.idn = idn

    def forward(self, image: torch.Tensor, *kernels: torch.Tensor):
        named = dict(zip(kernel_input_names(), kernels))

        def pick(prefix: str, kind: str, count: int):
            return tuple(named[f"{prefix}.{i}.{kind}"] for i in range(count))

        weights = SimpleNamespace(
            encoder_depthwise=pick("encoder", "depthwise", 5), encoder_pointwise=pick("encoder", "pointwise", 5),
            decoder_depthwise=pick("decoder", "depthwise", 4), decoder_pointwise=pick("decoder", "pointwise", 4),
        )
        return self.idn(image, weights)


def export_idn(idn: IDN, path: Path) -> Path:
    """Write the kernels-as-inputs ONNX graph to ``path`` (atomically)."""
    shapes = idn_layer_shapes()
    kernels = tuple(torch.randn(shape) * 0.1 for shape in shapes.values())
    image = torch.rand(1, 3, 224, 224)
    dynamic = {IMAGE_INPUT: {0: "batch", 2: "height", 3: "width"}}
    dynamic.update({name: {0: "batch", 2: "height", 3: "width"} for name in OUTPUTS})
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on the input-shape checks
        # a private eval-mode copy: the exporter restores the exported module's train/eval
        # mode afterwards, which must never reach the caller's IDN
        wrapper = _KernelsAsInputs(copy.deepcopy(idn)).eval()
        torch.onnx.export(wrapper, (image, *kernels), str(tmp), opset_version=OPSET,
                          input_names=[IMAGE_INPUT, *shapes], output_names=list(OUTPUTS),
                          dynamic_axes=dynamic, dynamo=False)
    return path


def cached_idn_onnx(idn: IDN) -> Path:
    """The exported graph for this IDN, exported on first use."""
    path = cache_dir() / "onnx" / f"idn-{model_hash(idn)}.onnx"
    return path if path.is_file() else export_idn(idn, path)
