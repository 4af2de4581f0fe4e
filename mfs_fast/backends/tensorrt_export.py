"""The IDN as ONNX for TensorRT: the 18 identity kernels as *named initializers*, refitted by name.

Why refit and not kernels-as-inputs (what onnxruntime and TVM use): TensorRT can take a
convolution kernel as a tensor (IConvolutionLayer input 1, "If used, the kernel weights parameter
must be set to empty weights", NvInfer.h; ONNX-TensorRT dropped "Weights `W` must be an
initializer" from its Conv row in 8.5 after https://github.com/onnx/onnx-tensorrt/issues/609),
but then the kernels are runtime data: no weight-prepacked tactics, no fusion with them. The
documented way to change weights without rebuilding is refitting: build with a refit flag, then
``trt.Refitter.set_named_weights(name, weights)`` + ``refit_cuda_engine()``, and "the ONNX
parser uses [setWeightsName] to associate the weights with the names used in the ONNX model"
(https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/refitting-engines.html).
So every kernel must be an initializer named as in ``idn_layer_shapes()`` that feeds a Conv
directly (anything in between could be constant-folded into an unnamed weight).

The graph is the kernels-as-inputs export (``onnx_export``) with those 18 inputs turned into
initializers: no re-export, so no renaming or folding surprises. Their build-time values are
placeholders (deterministic noise): TensorRT needs values to build, the engine never runs on them
(``run`` refuses to before ``set_identity``). Cached under cache_dir()/tensorrt/ by model hash.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import MfsError
from ..models import IDN, idn_layer_shapes
from ._cache import cache_dir, model_hash
from .onnx_export import IMAGE_INPUT, OUTPUTS, cached_idn_onnx

PLACEHOLDER_SEED = 0


def refittable_weight_names() -> list[str]:
    """Names of the weights ``set_identity`` refits, in IdentityWeights.tensors() order."""
    return list(idn_layer_shapes())


def placeholder_kernels() -> dict[str, np.ndarray]:
    """Build-time values of the identity kernels: small deterministic noise (never all zeros,
    so no builder shortcut can depend on them)."""
    rng = np.random.default_rng(PLACEHOLDER_SEED)
    return {name: (rng.standard_normal(shape) * 0.1).astype(np.float32) for name, shape in idn_layer_shapes().items()}


def kernels_to_initializers(model, values: dict[str, np.ndarray] | None = None):
    """The kernels-as-inputs ONNX ``model`` with the identity kernel inputs made initializers (in place)."""
    from onnx import numpy_helper

    values = values or placeholder_kernels()
    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    missing = [name for name in refittable_weight_names() if name not in inputs]
    if missing:
        raise MfsError(f"kernels-as-inputs graph lacks the kernel inputs {missing}: re-export it (clear the cache)")
    for name in refittable_weight_names():
        graph.input.remove(inputs[name])
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(values[name], np.float32), name))
    return model


def check_refittable_graph(model) -> list[str]:
    """The refittable weight names, after checking that the graph can be refitted by them.

    Each must be a float32 initializer of the ``idn_layer_shapes()`` shape, not a graph input,
    consumed only as the kernel (input 1) of Conv nodes, so that TensorRT's ONNX parser names the
    convolution weights after it. Raises MfsError listing every problem.
    """
    from onnx import TensorProto

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    graph_inputs = {i.name for i in graph.input}
    uses: dict[str, list[tuple[str, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            uses.setdefault(name, []).append((node.op_type, index))
    problems = []
    for name, shape in idn_layer_shapes().items():
        tensor = initializers.get(name)
        if tensor is None:
            problems.append(f"{name}: no initializer of that name")
            continue
        if name in graph_inputs:
            problems.append(f"{name}: also a graph input (TensorRT would treat it as runtime data)")
        if tuple(tensor.dims) != shape or tensor.data_type != TensorProto.FLOAT:
            problems.append(f"{name}: {TensorProto.DataType.Name(tensor.data_type)} {tuple(tensor.dims)}, "
                            f"expected FLOAT {shape}")
        consumers = uses.get(name, [])
        if not consumers or any(use != ("Conv", 1) for use in consumers):
            problems.append(f"{name}: used as {consumers or 'nothing'}, expected only as a Conv kernel (input 1)")
    if [i.name for i in graph.input] != [IMAGE_INPUT]:
        problems.append(f"graph inputs are {[i.name for i in graph.input]}, expected only {IMAGE_INPUT!r}")
    if [o.name for o in graph.output] != list(OUTPUTS):
        problems.append(f"graph outputs are {[o.name for o in graph.output]}, expected {list(OUTPUTS)}")
    if problems:
        raise MfsError("the ONNX graph cannot be refitted by identity-kernel name: " + "; ".join(problems))
    return refittable_weight_names()


def export_refit_onnx(idn: IDN, path: Path) -> Path:
    """Write the refittable graph for ``idn`` to ``path`` (atomically), checked."""
    import onnx

    model = kernels_to_initializers(onnx.load(str(cached_idn_onnx(idn))))
    onnx.checker.check_model(model)
    check_refittable_graph(model)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


def refit_onnx_path(idn_hash: str) -> Path:
    return cache_dir() / "tensorrt" / f"idn-refit-{idn_hash}.onnx"


def cached_refit_onnx(idn: IDN) -> Path:
    """The refittable graph for this IDN, exported on first use."""
    path = refit_onnx_path(model_hash(idn))
    return path if path.is_file() else export_refit_onnx(idn, path)
