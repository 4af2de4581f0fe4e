"""TensorRT (10.x) backend for NVIDIA GPUs: one refittable engine, identities changed by refit.

The engine is built from ``tensorrt_export``'s graph (identity kernels as named initializers;
why refit rather than kernels-as-inputs is in that module's docstring) with a refit flag, and
cached on disk keyed by (model hash, TensorRT version, GPU compute capability, precision, shape
profiles, refit mode). ``set_identity`` is ``Refitter.set_named_weights`` for the 18 kernels and
``refit_cuda_engine()``: it never rebuilds (``TensorRTBackend.builds`` counts builds).

Shapes: one engine with one optimization profile per supported side (224 and 256 by default),
each for batches 1..8 tuned at batch 1 (the per-frame case), and one execution context per
profile. One engine rather than one per shape, so a new identity is a single refit. Larger
batches run in chunks of ``max_batch``; other sides need ``sides=(...)`` (a new engine).

Precision: "fp32" clears BuilderFlag.TF32 (on by default; it rounds inputs to 10-bit mantissas,
which would miss the 1e-4 parity target); "fp16" sets BuilderFlag.FP16 (weak typing, TensorRT
10.x only: TensorRT 11 removed it, so fp16 there is an error that says so). Inputs and outputs
stay float32 in both.

Refit mode: with ``BuilderFlag.REFIT_INDIVIDUAL`` (TensorRT 10) only the 18 kernels are marked
refittable, so the fixed heads are optimized as constants; otherwise (or if marking fails) the
whole engine is built with ``BuilderFlag.REFIT``. Weights that TensorRT fused with a kernel
(``get_missing_weights()``) are supplied from the graph's own constants.

Device memory and copies use ``cuda.bindings.runtime`` (package cuda-python). Everything that
needs TensorRT or CUDA is imported lazily: the helpers above the class run without them.

Untested on hardware: TensorRT could not be installed or run on any machine available to this
project (see tests/test_tensorrt_backend.py for what is and is not covered).
Docs relied on: https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/refitting-engines.html,
https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Core/Refitter.html,
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/index.html.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import atomic_write
from ..errors import MfsError
from ..models import FaceSwapModels, IdentityWeights, idn_layer_shapes
from ._cache import cache_dir, model_hash
from ._registry import register_backend
from .base import checked_batch
from .onnx_export import IMAGE_INPUT, OUTPUTS
from .tensorrt_export import cached_refit_onnx, refittable_weight_names

log = logging.getLogger("mfs_fast.backends")

PRECISIONS = ("fp32", "fp16")
DEFAULT_SIDES = (224, 256)
DEFAULT_MAX_BATCH = 8
MIN_TENSORRT_MAJOR = 10
ENGINE_FORMAT = 1  # bump when the build recipe changes, so old cached engines are not reused
INSTALL_HINT = "pip install 'tensorrt-cu12>=10,<11' cuda-python"


# ---- pure helpers (no TensorRT, no CUDA) --------------------------------------------------------

def validate_precision(precision: str) -> str:
    """``precision`` if supported, else a clear error (before anything slow happens)."""
    if precision not in PRECISIONS:
        raise MfsError(f"TensorRT precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def profile_shapes(sides: Sequence[int] = DEFAULT_SIDES, max_batch: int = DEFAULT_MAX_BATCH
                   ) -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) image shapes of each optimization profile: one per side, batch 1..max_batch."""
    if max_batch < 1:
        raise MfsError(f"max_batch must be at least 1, got {max_batch}")
    bad = [side for side in sides if side <= 0 or side % 32]
    if not sides or bad or len(set(sides)) != len(sides):
        raise MfsError(f"sides must be distinct positive multiples of 32 (5 stride-2 stages), got {tuple(sides)}")
    return [((1, 3, s, s), (1, 3, s, s), (max_batch, 3, s, s)) for s in sides]


def profile_index(height: int, width: int, sides: Sequence[int] = DEFAULT_SIDES) -> int:
    """Which optimization profile (and execution context) serves an input of this size."""
    if height != width or height not in sides:
        raise MfsError(f"the TensorRT engine was built for square inputs of side {', '.join(map(str, sides))}; "
                       f"got {height}x{width} (create the backend with sides=(...) to build for others)")
    return list(sides).index(height)


def batch_chunks(n: int, max_batch: int) -> list[slice]:
    """Slices of at most ``max_batch`` covering a batch of ``n`` (the profiles' batch limit)."""
    return [slice(start, min(start + max_batch, n)) for start in range(0, n, max_batch)]


def choose_refit_mode(builder_flags: Sequence[str], network_methods: Sequence[str]) -> str:
    """"individual" (only the kernels refittable) when this TensorRT has it, else "all"."""
    if "REFIT_INDIVIDUAL" in builder_flags and "mark_weights_refittable" in network_methods:
        return "individual"
    return "all"


def engine_cache_key(idn_hash: str, tensorrt_version: str, compute_capability: str, precision: str,
                     sides: Sequence[int] = DEFAULT_SIDES, max_batch: int = DEFAULT_MAX_BATCH,
                     refit_mode: str = "individual") -> str:
    """Everything a serialized engine depends on: engines are specific to the TensorRT version and
    the GPU architecture, and to how they were built."""
    key = json.dumps({"format": ENGINE_FORMAT, "model": idn_hash, "tensorrt": tensorrt_version,
                      "gpu": compute_capability, "precision": validate_precision(precision),
                      "profiles": profile_shapes(sides, max_batch), "refit": refit_mode}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def engine_path(key: str) -> Path:
    return cache_dir() / "tensorrt" / f"idn-{key}.engine"


def refit_arrays(weights: IdentityWeights) -> dict[str, np.ndarray]:
    """The identity's kernels by refit name (in ``refittable_weight_names()`` order), C-contiguous
    float32 (what trt.Weights wraps without copying), shapes checked against the graph's."""
    shapes = idn_layer_shapes()
    arrays = {}
    for name, tensor in weights.tensors():
        array = np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)
        if name not in shapes or array.shape != shapes[name]:
            raise MfsError(f"identity weight {name!r} has shape {array.shape}, expected {shapes.get(name)}")
        arrays[name] = array
    missing = [name for name in refittable_weight_names() if name not in arrays]
    if missing:
        raise MfsError(f"identity weights lack {missing}")
    return {name: arrays[name] for name in refittable_weight_names()}


# ---- CUDA runtime (cuda-python) -----------------------------------------------------------------

def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:  # cuda-python before 12.6 had only this path
        from cuda import cudart
    return cudart


def _cuda(result, what: str):
    """Unpack a cuda-python call's (error, values...) tuple; raise with the call's name on error."""
    error, *values = result
    if getattr(error, "value", error) != 0:  # cudaError_t.cudaSuccess is 0
        raise MfsError(f"{what} failed: {error}")
    return values[0] if len(values) == 1 else tuple(values) if values else None


def gpu_compute_capability(cudart) -> str:
    """"sm_XY" of the current device: serialized engines only run on the architecture they were built for."""
    device = _cuda(cudart.cudaGetDevice(), "cudaGetDevice")
    attr = cudart.cudaDeviceAttr
    major, minor = (_cuda(cudart.cudaDeviceGetAttribute(which, device), "cudaDeviceGetAttribute")
                    for which in (attr.cudaDevAttrComputeCapabilityMajor, attr.cudaDevAttrComputeCapabilityMinor))
    return f"sm_{major}{minor}"


def _probe() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return f"tensorrt is not installed ({INSTALL_HINT}; needs an NVIDIA GPU)"
    if importlib.util.find_spec("onnx") is None:
        return "onnx is not installed (pip install onnx): the engine is built from an ONNX graph"
    try:
        import tensorrt as trt
    except Exception as error:  # e.g. OSError: libnvinfer missing
        return f"tensorrt cannot be imported: {error}"
    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        return f"TensorRT {trt.__version__} is too old (this backend uses the TensorRT {MIN_TENSORRT_MAJOR} API)"
    try:
        cudart = _cudart()
    except ImportError:
        return "cuda-python is not installed (pip install cuda-python): needed for GPU memory and streams"
    try:
        count = _cuda(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except Exception as error:
        return f"no CUDA device visible ({error})"
    if not count:
        return "no CUDA device visible"
    return None


# ---- engine building (TensorRT) -----------------------------------------------------------------

def build_serialized_engine(trt, onnx_path: Path, precision: str, sides: Sequence[int], max_batch: int,
                            refit_mode: str, logger) -> tuple[bytes, str]:
    """Parse the refittable graph and build a serialized engine; returns it and the refit mode used."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise MfsError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if refit_mode == "individual":
        unmarked = [name for name in refittable_weight_names() if not network.mark_weights_refittable(name)]
        if unmarked:
            log.warning("TensorRT did not accept %s as refittable weights; building with BuilderFlag.REFIT "
                        "(every weight refittable) instead", unmarked)
            refit_mode = "all"
    config.set_flag(trt.BuilderFlag.REFIT_INDIVIDUAL if refit_mode == "individual" else trt.BuilderFlag.REFIT)
    if precision == "fp16":
        fp16 = getattr(trt.BuilderFlag, "FP16", None)
        if fp16 is None:
            raise MfsError(f"precision='fp16' needs BuilderFlag.FP16, which TensorRT {trt.__version__} no longer "
                           "has (removed with weak typing in TensorRT 11); use precision='fp32' or TensorRT 10.x")
        config.set_flag(fp16)
    elif hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default; fp32 parity needs full float32 products
    for low, opt, high in profile_shapes(sides, max_batch):
        profile = builder.create_optimization_profile()
        profile.set_shape(IMAGE_INPUT, low, opt, high)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MfsError("TensorRT could not build the IDN engine (its log above says why)")
    return bytes(serialized), refit_mode


def _fixed_weights(onnx_path: Path) -> dict[str, np.ndarray]:
    """Every constant of the graph by name (initializers and Constant nodes): what TensorRT may ask
    for when it fused one of them with an identity kernel."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return {name: np.ascontiguousarray(value) for name, value in values.items()}


# ---- the backend --------------------------------------------------------------------------------

@register_backend("tensorrt", probe=_probe)
class TensorRTBackend:
    name = "tensorrt"
    builds = 0  # class-wide engine builds, so tests can prove identity changes never build
    refits = 0  # class-wide successful refits

    def __init__(self, models: FaceSwapModels, threads: int | None = None, precision: str = "fp32",
                 sides: Sequence[int] = DEFAULT_SIDES, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        """``threads`` is accepted for interface parity and ignored (the work runs on the GPU)."""
        import tensorrt as trt

        self.trt = trt
        self.precision = validate_precision(precision)
        self.sides, self.max_batch = tuple(sides), int(max_batch)
        profile_shapes(self.sides, self.max_batch)  # validates before any build
        self._cudart = _cudart()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._buffers: dict[str, int] = {}
        self._stream = None
        self._contexts: dict[int, object] = {}
        self._has_identity = False

        self.onnx_path = cached_refit_onnx(models.idn)
        self.compute_capability = gpu_compute_capability(self._cudart)
        self.refit_mode = choose_refit_mode(dir(trt.BuilderFlag), dir(trt.INetworkDefinition))
        key = engine_cache_key(model_hash(models.idn), trt.__version__, self.compute_capability, self.precision,
                               self.sides, self.max_batch, self.refit_mode)
        self.engine_path = engine_path(key)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._load_or_build()
        self._check_engine()

        self._refitter = trt.Refitter(self.engine, self._logger)
        refittable = set(self._refitter.get_all_weights())
        absent = [name for name in refittable_weight_names() if name not in refittable]
        if absent:
            raise MfsError(f"the TensorRT engine cannot refit {absent} (refittable: {sorted(refittable)[:8]}...); "
                           f"delete {self.engine_path} to rebuild it")
        if refittable - set(refittable_weight_names()):  # a cached engine built with the REFIT fallback
            self.refit_mode = "all"
        self._fixed: dict[str, np.ndarray] | None = None
        # host copies trt.Weights points at (no copy): kept alive and unchanged until a refit returns
        self._weights = {name: np.zeros(shape, np.float32) for name, shape in idn_layer_shapes().items()}

        self._stream = _cuda(self._cudart.cudaStreamCreate(), "cudaStreamCreate")
        n, side = self.max_batch, max(self.sides)
        sizes = {IMAGE_INPUT: n * 3 * side * side, OUTPUTS[0]: n * 3 * side * side, OUTPUTS[1]: n * side * side}
        for tensor, count in sizes.items():
            self._buffers[tensor] = _cuda(self._cudart.cudaMalloc(count * 4), "cudaMalloc")

    # -- engine ---------------------------------------------------------------------------------

    def _load_or_build(self):
        if self.engine_path.is_file():
            engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if engine is not None:
                return engine
            log.warning("cached TensorRT engine %s could not be loaded; rebuilding it", self.engine_path)
        log.info("building the TensorRT IDN engine (%s, sides %s, batch 1..%d): minutes, once per GPU and version",
                 self.precision, self.sides, self.max_batch)
        data, self.refit_mode = build_serialized_engine(self.trt, self.onnx_path, self.precision, self.sides,
                                                        self.max_batch, self.refit_mode, self._logger)
        TensorRTBackend.builds += 1
        atomic_write(self.engine_path, data)
        engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise MfsError("TensorRT could not load the engine it has just built")
        return engine

    def _check_engine(self) -> None:
        trt, engine = self.trt, self.engine
        if not engine.refittable:
            raise MfsError(f"the cached TensorRT engine {self.engine_path} is not refittable; delete it to rebuild")
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        if names != {IMAGE_INPUT, *OUTPUTS}:
            raise MfsError(f"unexpected TensorRT engine tensors {sorted(names)}; expected {[IMAGE_INPUT, *OUTPUTS]}")
        for name in names:
            if engine.get_tensor_dtype(name) != trt.float32:
                raise MfsError(f"TensorRT engine tensor {name!r} is {engine.get_tensor_dtype(name)}, expected float32")
        if engine.num_optimization_profiles != len(self.sides):
            raise MfsError(f"the TensorRT engine has {engine.num_optimization_profiles} profiles, "
                           f"expected {len(self.sides)}; delete {self.engine_path} to rebuild it")

    # -- identity -------------------------------------------------------------------------------

    def set_identity(self, weights: IdentityWeights) -> None:
        """Refit the 18 kernels by name (never a rebuild)."""
        arrays = refit_arrays(weights)
        self._has_identity = False  # a failed refit may leave some weights updated: refuse to run
        refitter, trt = self._refitter, self.trt
        for name, array in arrays.items():
            np.copyto(self._weights[name], array)
            if not refitter.set_named_weights(name, trt.Weights(self._weights[name])):
                raise MfsError(f"TensorRT rejected the new weights for {name!r} ({array.shape})")
        missing = list(refitter.get_missing_weights())
        if missing:  # weights TensorRT fused with a kernel: supply the graph's values
            if self._fixed is None:
                self._fixed = _fixed_weights(self.onnx_path)
            for name in missing:
                if name in self._fixed:
                    refitter.set_named_weights(name, trt.Weights(self._fixed[name]))
            missing = list(refitter.get_missing_weights())
        if missing:
            raise MfsError(f"TensorRT refit needs weights this backend cannot supply: {missing}")
        # TensorRT 8 documents that contexts must be recreated after a refit (10 keeps them valid):
        # drop them so run() makes fresh ones; nothing is enqueued, since run() synchronizes
        self._contexts.clear()
        if not refitter.refit_cuda_engine():
            raise MfsError("TensorRT refit failed (its log above says why)")
        TensorRTBackend.refits += 1
        self._has_identity = True

    # -- running --------------------------------------------------------------------------------

    def _context(self, profile: int):
        context = self._contexts.get(profile)
        if context is None:
            context = self.engine.create_execution_context()
            if context is None:
                raise MfsError("TensorRT could not create an execution context (out of GPU memory?)")
            context.set_optimization_profile_async(profile, int(self._stream))
            for tensor, pointer in self._buffers.items():
                if not context.set_tensor_address(tensor, pointer):
                    raise MfsError(f"TensorRT refused the device buffer of {tensor!r}")
            self._contexts[profile] = context
        return context

    def _copy(self, destination: int, source: int, nbytes: int, kind) -> None:
        _cuda(self._cudart.cudaMemcpyAsync(destination, source, nbytes, kind, self._stream), "cudaMemcpyAsync")

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = checked_batch(batch, self._has_identity)
        n, _, height, width = batch.shape
        context = self._context(profile_index(height, width, self.sides))
        faces = np.empty((n, 3, height, width), np.float32)
        masks = np.empty((n, 1, height, width), np.float32)
        kinds = self._cudart.cudaMemcpyKind
        for part in batch_chunks(n, self.max_batch):
            chunk = batch[part]  # a leading-axis slice of a C-contiguous array: contiguous
            if not context.set_input_shape(IMAGE_INPUT, chunk.shape):
                raise MfsError(f"TensorRT rejected the input shape {chunk.shape}")
            self._copy(self._buffers[IMAGE_INPUT], chunk.ctypes.data, chunk.nbytes, kinds.cudaMemcpyHostToDevice)
            if not context.execute_async_v3(int(self._stream)):
                raise MfsError("TensorRT execution failed (its log above says why)")
            for host, tensor in ((faces[part], OUTPUTS[0]), (masks[part], OUTPUTS[1])):
                self._copy(host.ctypes.data, self._buffers[tensor], host.nbytes, kinds.cudaMemcpyDeviceToHost)
            _cuda(self._cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return faces, masks

    # -- cleanup --------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the GPU buffers and the stream (also done when the backend is garbage collected)."""
        self._contexts.clear()
        for pointer in self._buffers.values():
            self._cudart.cudaFree(pointer)
        self._buffers = {}
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None

    def __del__(self) -> None:
        try:
            if getattr(self, "_cudart", None) is not None:
                self.close()
        except Exception:  # interpreter shutdown: CUDA may already be gone
            pass
