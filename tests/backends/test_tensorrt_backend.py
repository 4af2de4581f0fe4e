"""TensorRT backend: what can be checked without TensorRT runs everywhere; the engine tests need
TensorRT and a CUDA GPU and skip with the reason otherwise.

The refittable ONNX graph (the 18 identity kernels as named initializers) is what TensorRT's
parser would read; running it in ONNX Runtime with an identity written into those initializers
and matching the PyTorch IDN proves the graph, and so the names TensorRT refits, are right.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import importlib.machinery
import sys
import types

import numpy as np
import pytest
import torch

from mfs_fast.backends import DEFAULT_PREFERENCE, BackendUnavailable, backend_report, create_backend
from mfs_fast.backends import tensorrt_backend as trb
from mfs_fast.backends import tensorrt_export as tre
from mfs_fast.backends.onnx_export import IMAGE_INPUT, OUTPUTS, model_hash
from mfs_fast.errors import MfsError
from mfs_fast.models import idn_layer_shapes

FP32_ATOL = 1e-4
FP16_ATOL = 2e-2


def random_identity(models):
    return models.identity_weights(torch.randn(1, 3, 112, 112))


@torch.no_grad()
def torch_idn(models, images: np.ndarray, identity) -> tuple[np.ndarray, np.ndarray]:
    faces, masks = models.idn(torch.from_numpy(images), identity)
    return faces.numpy(), masks.numpy()


_BASE_IDENTITIES: dict = {}  # only the 18 kernels are replaced, so one IIN run per models object will do


def synthetic_identity(models, seed: int):
    """An identity whose 18 kernels are random at the scale that keeps activations O(1) (depthwise
    N(0, 0.25^2), pointwise rows of unit norm like demodulated ones): the random test IIN's kernels
    are so small that any two identities give almost the same output, which would prove nothing."""
    base = _BASE_IDENTITIES.get(id(models)) or _BASE_IDENTITIES.setdefault(id(models), random_identity(models))
    generator = torch.Generator().manual_seed(seed)

    def depthwise(t):
        return torch.randn(t.shape, generator=generator) * 0.25

    def pointwise(t):
        w = torch.randn(t.shape, generator=generator)
        return w / w.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)

    return dataclasses.replace(
        base, encoder_depthwise=tuple(map(depthwise, base.encoder_depthwise)),
        encoder_pointwise=tuple(map(pointwise, base.encoder_pointwise)),
        decoder_depthwise=tuple(map(depthwise, base.decoder_depthwise)),
        decoder_pointwise=tuple(map(pointwise, base.decoder_pointwise)))


@pytest.fixture(scope="module")
def sensitive_models():
    """Random models whose heads pass the identity through: with the default random init the final
    and mask heads all but flatten their input, so faces/masks would barely depend on the kernels."""
    from mfs_fast.models import FaceSwapModels

    models = FaceSwapModels.random(seed=3)
    with torch.no_grad():
        models.idn.final[1].weight.mul_(10.0)  # first conv of the output head
        models.idn.mask[0][1].weight.mul_(1000.0)  # first conv of the mask head
    return models


@pytest.fixture(scope="module")
def refit_model(official_models):
    import onnx

    return onnx.load(str(tre.cached_refit_onnx(official_models.idn)))


def with_kernels(model, arrays: dict[str, np.ndarray]):
    """A copy of ``model`` whose kernel initializers hold ``arrays`` (what a refit does to the engine)."""
    from onnx import numpy_helper

    model = type(model).FromString(model.SerializeToString())
    for tensor in model.graph.initializer:
        if tensor.name in arrays:
            tensor.CopyFrom(numpy_helper.from_array(arrays[tensor.name], tensor.name))
    return model


def with_stage_outputs(model):
    """A copy of ``model`` that also outputs the last encoder stage and the decoder output (the
    tensors the 18 kernels make directly: the random test heads all but flatten faces and masks)."""
    from onnx import TensorProto, helper

    model = type(model).FromString(model.SerializeToString())
    for head in ("/idn/mask/", "/idn/final/"):
        resize = next(n for n in model.graph.node if n.name.startswith(head) and n.op_type == "Resize")
        model.graph.output.append(helper.make_tensor_value_info(resize.input[0], TensorProto.FLOAT, None))
    return model


def run_onnxruntime(model, images: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {IMAGE_INPUT: images})


@torch.no_grad()
def torch_stages(models, images: np.ndarray, identity) -> list[np.ndarray]:
    """faces, masks, last encoder stage, decoder output."""
    x = torch.from_numpy(images)
    stages = models.idn.encode(x, identity)
    return [*torch_idn(models, images, identity), stages[-1].numpy(), models.idn.decode(stages, identity).numpy()]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


# ---- the refittable graph -----------------------------------------------------------------------

def test_refit_graph_holds_the_18_kernels_as_named_initializers(refit_model):
    initializers = {t.name: tuple(t.dims) for t in refit_model.graph.initializer}
    shapes = idn_layer_shapes()
    assert len(shapes) == 18 and tre.refittable_weight_names() == list(shapes)
    assert {name: initializers.get(name) for name in shapes} == shapes
    assert [i.name for i in refit_model.graph.input] == [IMAGE_INPUT]  # nothing per identity left as input
    assert tre.check_refittable_graph(refit_model) == list(shapes)


def test_refit_graph_with_an_identity_in_its_initializers_matches_torch(official_models, refit_model):
    """Proves the graph TensorRT would parse: kernels written by name give the PyTorch IDN's output."""
    rng = np.random.default_rng()
    staged = with_stage_outputs(refit_model)
    for size, batch in ((224, 2), (256, 1)):
        identity = random_identity(official_models)
        images = rng.random((batch, 3, size, size), dtype=np.float32)
        faces, masks, encoded, decoded = run_onnxruntime(with_kernels(staged, trb.refit_arrays(identity)), images)
        theirs = torch_stages(official_models, images, identity)
        for a, b in zip((faces, masks), theirs[:2]):
            assert a.shape == b.shape and np.abs(a - b).max() <= FP32_ATOL
        for a, b in zip((encoded, decoded), theirs[2:]):
            assert a.shape == b.shape and relative_error(a, b) <= 1e-4
        # the build-time placeholders really are replaced: left in, the decoder output is unrelated
        assert relative_error(run_onnxruntime(staged, images)[3], theirs[3]) > 0.1


def test_refit_graph_outputs_follow_the_kernels_written_into_it(sensitive_models):
    import onnx

    model = onnx.load(str(tre.cached_refit_onnx(sensitive_models.idn)))
    images = np.random.default_rng().random((2, 3, 224, 224), dtype=np.float32)
    results = {}
    for seed in (1, 2):
        identity = synthetic_identity(sensitive_models, seed)
        ours = run_onnxruntime(with_kernels(model, trb.refit_arrays(identity)), images)
        theirs = torch_idn(sensitive_models, images, identity)
        for a, b in zip(ours, theirs):
            assert np.abs(a - b).max() <= FP32_ATOL
        results[seed] = theirs
    for a, b in zip(results[1], results[2]):  # so the tolerance above tells identities apart
        assert np.abs(a - b).max() > 20 * FP32_ATOL


def test_refit_graph_check_names_every_problem(official_models, refit_model):
    import onnx
    from onnx import helper

    from mfs_fast.backends.onnx_export import cached_idn_onnx

    with pytest.raises(MfsError, match="encoder.0.depthwise: no initializer"):  # the kernels-as-inputs graph
        tre.check_refittable_graph(onnx.load(str(cached_idn_onnx(official_models.idn))))

    dropped = type(refit_model).FromString(refit_model.SerializeToString())
    tensor = next(t for t in dropped.graph.initializer if t.name == "decoder.3.pointwise")
    dropped.graph.initializer.remove(tensor)
    with pytest.raises(MfsError, match="decoder.3.pointwise: no initializer"):
        tre.check_refittable_graph(dropped)

    reshaped = with_kernels(refit_model, {"encoder.1.pointwise": np.zeros((64, 32), np.float32)})
    with pytest.raises(MfsError, match=r"encoder.1.pointwise: FLOAT \(64, 32\), expected FLOAT \(64, 32, 1, 1\)"):
        tre.check_refittable_graph(reshaped)

    # a node between kernel and Conv: TensorRT could fold it into a weight with another name
    indirect = type(refit_model).FromString(refit_model.SerializeToString())
    conv = next(n for n in indirect.graph.node if n.op_type == "Conv" and n.input[1] == "encoder.2.depthwise")
    conv.input[1] = "encoder.2.depthwise.copied"
    indirect.graph.node.insert(0, helper.make_node("Identity", ["encoder.2.depthwise"], ["encoder.2.depthwise.copied"]))
    with pytest.raises(MfsError, match=r"encoder.2.depthwise: used as \[\('Identity', 0\)\]"):
        tre.check_refittable_graph(indirect)


def test_refit_graph_is_cached_by_model_hash(official_models, tmp_path, monkeypatch):
    monkeypatch.setenv("MFS_FAST_CACHE", str(tmp_path))
    path = tre.cached_refit_onnx(official_models.idn)
    assert path == tmp_path / "tensorrt" / f"idn-refit-{model_hash(official_models.idn)}.onnx" and path.is_file()

    def no_export(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr(tre, "export_refit_onnx", no_export)
    assert tre.cached_refit_onnx(official_models.idn) == path


# ---- pure helpers ------------------------------------------------------------------------------

def test_engine_cache_key_covers_everything_an_engine_depends_on(tmp_path, monkeypatch):
    base = dict(idn_hash="0123456789abcdef", tensorrt_version="10.13.0.35", compute_capability="sm_90",
                precision="fp32", sides=(224, 256), max_batch=8, refit_mode="individual")
    key = trb.engine_cache_key(**base)
    assert key == trb.engine_cache_key(**base)  # stable
    changes = {"idn_hash": "fedcba9876543210", "tensorrt_version": "10.14.1", "compute_capability": "sm_89",
               "precision": "fp16", "sides": (224,), "max_batch": 4, "refit_mode": "all"}
    keys = {name: trb.engine_cache_key(**{**base, name: value}) for name, value in changes.items()}
    assert key not in keys.values() and len(set(keys.values())) == len(changes)
    monkeypatch.setenv("MFS_FAST_CACHE", str(tmp_path))
    assert trb.engine_path(key) == tmp_path / "tensorrt" / f"idn-{key}.engine"


def test_precision_is_validated_before_anything_slow():
    assert [trb.validate_precision(p) for p in ("fp32", "fp16")] == ["fp32", "fp16"]
    for bad in ("int8", "FP16", "float16", ""):
        with pytest.raises(MfsError, match="fp32, fp16"):
            trb.validate_precision(bad)
    with pytest.raises(MfsError, match="precision"):
        trb.engine_cache_key("h", "10.0", "sm_90", "bf16")


def test_profiles_one_per_side_for_batches_1_to_max():
    assert trb.profile_shapes((224, 256), 8) == [
        ((1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224)),
        ((1, 3, 256, 256), (1, 3, 256, 256), (8, 3, 256, 256)),
    ]
    assert trb.profile_index(224, 224) == 0 and trb.profile_index(256, 256) == 1
    for height, width in ((240, 240), (224, 256), (512, 512)):
        with pytest.raises(MfsError, match="sides=") as error:
            trb.profile_index(height, width)
        assert f"{height}x{width}" in str(error.value)
    for sides, max_batch in (((224, 250), 8), ((224, 224), 8), ((), 8), ((224,), 0)):
        with pytest.raises(MfsError):
            trb.profile_shapes(sides, max_batch)


def test_batches_beyond_the_profile_run_in_chunks():
    assert trb.batch_chunks(3, 8) == [slice(0, 3)]
    assert trb.batch_chunks(19, 8) == [slice(0, 8), slice(8, 16), slice(16, 19)]
    assert trb.batch_chunks(16, 8) == [slice(0, 8), slice(8, 16)]
    assert trb.batch_chunks(0, 8) == []


def test_refit_mode_prefers_marking_only_the_kernels():
    assert trb.choose_refit_mode(["REFIT", "REFIT_INDIVIDUAL"], ["mark_weights_refittable"]) == "individual"
    assert trb.choose_refit_mode(["REFIT"], ["mark_weights_refittable"]) == "all"
    assert trb.choose_refit_mode(["REFIT", "REFIT_INDIVIDUAL"], []) == "all"


def test_refit_arrays_map_identity_tensors_to_weight_names(official_models):
    identity = random_identity(official_models)
    arrays = trb.refit_arrays(identity)
    assert list(arrays) == tre.refittable_weight_names()
    for name, tensor in identity.tensors():
        array = arrays[name]
        assert array.dtype == np.float32 and array.flags.c_contiguous and array.shape == idn_layer_shapes()[name]
        assert np.array_equal(array, tensor.numpy())
    half = trb.refit_arrays(identity.to(torch.float16))  # converted, not refused
    assert all(a.dtype == np.float32 for a in half.values())
    broken = dataclasses.replace(identity, decoder_pointwise=identity.decoder_pointwise[:-1]
                                 + (identity.decoder_pointwise[-1][:, :-1],))
    with pytest.raises(MfsError, match=r"decoder.3.pointwise.*expected \(32, 128, 1, 1\)"):
        trb.refit_arrays(broken)


def test_placeholder_kernels_are_deterministic_and_non_zero():
    first, second = tre.placeholder_kernels(), tre.placeholder_kernels()
    assert list(first) == tre.refittable_weight_names()
    for name, array in first.items():
        assert array.shape == idn_layer_shapes()[name] and np.array_equal(array, second[name])
        assert np.all(array != 0)


# ---- availability: probe, strict creation, report -----------------------------------------------

def _fake_module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attributes)
    return module


def test_probe_reasons(monkeypatch):
    real_find_spec = trb.importlib.util.find_spec
    monkeypatch.setattr(trb.importlib.util, "find_spec",
                        lambda name: None if name == "tensorrt" else real_find_spec(name))
    assert trb._probe().startswith("tensorrt is not installed (pip install 'tensorrt-cu12>=10,<11' cuda-python")
    monkeypatch.setattr(trb.importlib.util, "find_spec", real_find_spec)

    monkeypatch.setitem(sys.modules, "tensorrt", _fake_module("tensorrt", __version__="8.6.1"))
    assert trb._probe() == "TensorRT 8.6.1 is too old (this backend uses the TensorRT 10 API)"

    monkeypatch.setitem(sys.modules, "tensorrt", _fake_module("tensorrt", __version__="10.13.0.35"))

    def no_cuda_python():
        raise ImportError("No module named 'cuda'")

    monkeypatch.setattr(trb, "_cudart", no_cuda_python)
    assert trb._probe().startswith("cuda-python is not installed")
    monkeypatch.setattr(trb, "_cudart", lambda: types.SimpleNamespace(cudaGetDeviceCount=lambda: (0, 0)))
    assert trb._probe() == "no CUDA device visible"
    monkeypatch.setattr(trb, "_cudart", lambda: types.SimpleNamespace(cudaGetDeviceCount=lambda: (100, 0)))
    assert trb._probe() == "no CUDA device visible (cudaGetDeviceCount failed: 100)"
    monkeypatch.setattr(trb, "_cudart", lambda: types.SimpleNamespace(cudaGetDeviceCount=lambda: (0, 1)))
    assert trb._probe() is None


def test_probe_says_why_tensorrt_cannot_run_here():
    reason = trb._probe()
    if reason is None:
        pytest.skip("TensorRT and a CUDA GPU are usable here")
    assert reason.startswith(("tensorrt is not installed", "tensorrt cannot be imported", "TensorRT ",
                              "cuda-python is not installed", "no CUDA device visible", "onnx is not installed"))


def test_strict_creation_fails_with_the_probe_reason(official_models):
    reason = trb._probe()
    if reason is None:
        pytest.skip("TensorRT and a CUDA GPU are usable here")
    with pytest.raises(BackendUnavailable) as error:
        create_backend("tensorrt", official_models, strict=True)
    assert str(error.value) == f"backend 'tensorrt' cannot be used: {reason}"
    with pytest.raises(BackendUnavailable, match="'tensorrt' cannot be used: "):
        create_backend(["tensorrt", "torch"], official_models, strict=True)
    assert create_backend(["tensorrt", "torch"], official_models).name == "torch"  # logged fallback


def test_tensorrt_is_first_in_the_preference_and_in_the_report(capsys):
    from mfs_fast import cli

    assert DEFAULT_PREFERENCE[0] == "tensorrt"
    report = {name: (usable, reason) for name, usable, reason in backend_report()}
    reason = trb._probe()
    assert report["tensorrt"] == (reason is None, reason or "ok")
    assert cli.main(["doctor"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["tensorrt"])
    assert ("usable" if reason is None else f"unusable  {reason}") in line


# ---- the backend's glue against a stand-in TensorRT ---------------------------------------------
# TensorRT cannot run here, so these tests drive TensorRTBackend through a stand-in for the calls it
# makes (names and signatures as in the TensorRT 10 Python API; the "engine" runs the parsed ONNX
# graph in ONNX Runtime with the refitted weights; "device memory" is host memory). They prove the
# backend's own logic (build once and cache, refit by name, supply fused weights, recreate contexts
# after a refit, profile per side, chunking, copies), never that TensorRT behaves as documented.

class _Flag:
    REFIT, REFIT_INDIVIDUAL, FP16, TF32 = "REFIT", "REFIT_INDIVIDUAL", "FP16", "TF32"


class _Network:
    refuse_marks = False

    def __init__(self):
        self.model, self.marked = None, []

    def mark_weights_refittable(self, name):
        if self.refuse_marks or name not in {t.name for t in self.model.graph.initializer}:
            return False
        self.marked.append(name)
        return True


class _Parser:
    def __init__(self, network, logger):
        self.network, self.num_errors = network, 0

    def parse_from_file(self, path):
        import onnx

        self.network.model = onnx.load(path)
        return True


class _Config:
    def __init__(self):
        self.flags, self.profiles = {"TF32"}, []  # TF32 is on by default

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile.shapes)
        return len(self.profiles) - 1


class _Profile:
    def set_shape(self, name, low, opt, high):
        assert name == IMAGE_INPUT
        self.shapes = (tuple(low), tuple(opt), tuple(high))


class _Builder:
    builds = 0

    def __init__(self, logger):
        pass

    def create_network(self, flags=0):
        return _Network()

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        _Builder.builds += 1
        assert not {"REFIT", "REFIT_INDIVIDUAL"} <= config.flags  # documented as exclusive
        header = {"flags": sorted(config.flags), "profiles": config.profiles, "marked": network.marked}
        return json.dumps(header).encode() + b"\n" + network.model.SerializeToString()


class _Weights:
    def __init__(self, array):
        self.array = array  # by reference, like trt.Weights(numpy array)


class _Engine:
    def __init__(self, header, model):
        from onnx import numpy_helper

        self.header, self.model, self.version = header, model, 0
        self.weights = {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}
        individual = "REFIT_INDIVIDUAL" in header["flags"]
        self.refittable_names = header["marked"] if individual else list(self.weights)
        self.refittable = individual or "REFIT" in header["flags"]
        self.num_io_tensors, self.num_optimization_profiles = 3, len(header["profiles"])
        self.fused = {}  # refittable name -> name TensorRT would also want (a fused weight)
        self._session = None

    def get_tensor_name(self, index):
        return [IMAGE_INPUT, *OUTPUTS][index]

    def get_tensor_dtype(self, name):
        return "float32"

    def create_execution_context(self):
        return _Context(self)

    def session(self):
        import onnxruntime as ort

        if self._session is None or self._session[0] != self.version:
            model = with_kernels(self.model, self.weights)
            self._session = (self.version, ort.InferenceSession(model.SerializeToString(),
                                                                providers=["CPUExecutionProvider"]))
        return self._session[1]


class _Context:
    def __init__(self, engine):
        self.engine, self.version, self.profile, self.addresses, self.shape = engine, engine.version, None, {}, None

    def set_optimization_profile_async(self, index, stream):
        assert isinstance(stream, int) and 0 <= index < self.engine.num_optimization_profiles
        self.profile = index
        return True

    def set_tensor_address(self, name, pointer):
        self.addresses[name] = pointer
        return True

    def set_input_shape(self, name, shape):
        low, _, high = self.engine.header["profiles"][self.profile]
        self.shape = tuple(shape)
        return name == IMAGE_INPUT and all(a <= b <= c for a, b, c in zip(low, self.shape, high))

    def execute_async_v3(self, stream):
        assert isinstance(stream, int)
        assert self.version == self.engine.version, "context used after a refit"
        n, _, h, w = self.shape
        count = int(np.prod(self.shape))
        image = np.ctypeslib.as_array((ctypes.c_float * count).from_address(self.addresses[IMAGE_INPUT]))
        faces, masks = self.engine.session().run(list(OUTPUTS), {IMAGE_INPUT: image.reshape(self.shape).copy()})
        for name, value in zip(OUTPUTS, (faces, masks)):
            value = np.ascontiguousarray(value, np.float32)
            ctypes.memmove(self.addresses[name], value.ctypes.data, value.nbytes)
        return True


class _Refitter:
    def __init__(self, engine, logger):
        self.engine, self.pending = engine, {}

    def get_all_weights(self):
        return list(self.engine.refittable_names)

    def set_named_weights(self, name, weights):
        if name not in self.engine.refittable_names and name not in self.engine.fused.values():
            return False
        if weights.array.size != self.engine.weights[name].size:
            return False
        self.pending[name] = weights.array
        return True

    def get_missing_weights(self):
        fused = self.engine.fused.items()
        return [other for name, other in fused if name in self.pending and other not in self.pending]

    def refit_cuda_engine(self):
        if self.get_missing_weights():
            return False
        for name, array in self.pending.items():
            self.engine.weights[name] = np.array(array).reshape(self.engine.weights[name].shape)
        self.pending = {}
        self.engine.version += 1
        return True


class _Runtime:
    def __init__(self, logger):
        pass

    def deserialize_cuda_engine(self, data):
        import onnx

        header, _, body = bytes(data).partition(b"\n")
        try:
            return _Engine(json.loads(header), onnx.load_from_string(body))
        except ValueError:
            return None


class _Logger:
    WARNING = "WARNING"

    def __init__(self, severity):
        pass


class _Stream:
    def __int__(self):
        return 12345


def _fake_cudart(memory: dict):
    def malloc(nbytes):
        buffer = np.zeros(nbytes, np.uint8)
        memory[buffer.ctypes.data] = buffer
        return 0, buffer.ctypes.data

    def free(pointer):
        memory.pop(pointer)
        return (0,)

    def memcpy(destination, source, nbytes, kind, stream):
        assert isinstance(destination, int) and isinstance(source, int) and isinstance(stream, _Stream)
        ctypes.memmove(destination, source, nbytes)
        return (0,)

    attr = types.SimpleNamespace(cudaDevAttrComputeCapabilityMajor="major", cudaDevAttrComputeCapabilityMinor="minor")
    return types.SimpleNamespace(
        cudaGetDeviceCount=lambda: (0, 1), cudaGetDevice=lambda: (0, 0), cudaDeviceAttr=attr,
        cudaDeviceGetAttribute=lambda what, device: (0, {"major": 8, "minor": 6}[what]),
        cudaStreamCreate=lambda: (0, _Stream()), cudaStreamSynchronize=lambda stream: (0,),
        cudaStreamDestroy=lambda stream: (0,), cudaMalloc=malloc, cudaFree=free,
        cudaMemcpyAsync=memcpy,
        cudaMemcpyKind=types.SimpleNamespace(cudaMemcpyHostToDevice="h2d", cudaMemcpyDeviceToHost="d2h"))


@pytest.fixture()
def stand_in(monkeypatch, tmp_path):
    """TensorRT and cuda-python replaced by the stand-ins above, in a fresh engine cache."""
    monkeypatch.setenv("MFS_FAST_CACHE", str(tmp_path))
    trt = _fake_module("tensorrt", __version__="10.99.0", float32="float32", Logger=_Logger, BuilderFlag=_Flag,
                       INetworkDefinition=_Network, Builder=_Builder, OnnxParser=_Parser, Runtime=_Runtime,
                       Refitter=_Refitter, Weights=_Weights)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    memory: dict = {}
    monkeypatch.setattr(trb, "_cudart", lambda: _fake_cudart(memory))
    monkeypatch.setattr(_Network, "refuse_marks", False)
    return types.SimpleNamespace(trt=trt, memory=memory, cache=tmp_path)


def _header(backend) -> dict:
    return json.loads(backend.engine_path.read_bytes().partition(b"\n")[0])


def test_glue_builds_once_refits_by_name_and_matches_torch(stand_in, sensitive_models):
    assert trb._probe() is None
    builds, refits = trb.TensorRTBackend.builds, trb.TensorRTBackend.refits
    backend = create_backend("tensorrt", sensitive_models, strict=True)
    assert trb.TensorRTBackend.builds == builds + 1 and backend.refit_mode == "individual"
    assert backend.engine_path.parent == stand_in.cache / "tensorrt" and backend.compute_capability == "sm_86"
    header = _header(backend)
    assert "REFIT_INDIVIDUAL" in header["flags"] and "TF32" not in header["flags"] and "FP16" not in header["flags"]
    assert header["marked"] == tre.refittable_weight_names()
    assert [tuple(map(tuple, p)) for p in header["profiles"]] == trb.profile_shapes()
    _check_parity(backend, sensitive_models, FP32_ATOL)  # A -> B -> A, batch 11 chunked, both sides
    assert trb.TensorRTBackend.builds == builds + 1 and trb.TensorRTBackend.refits == refits + 3
    again = create_backend("tensorrt", sensitive_models, strict=True)  # from the disk cache
    assert trb.TensorRTBackend.builds == builds + 1 and again.engine_path == backend.engine_path
    with pytest.raises(MfsError, match="sides="):
        backend.run(np.zeros((1, 3, 192, 192), np.float32))
    allocated = len(stand_in.memory)
    backend.close()
    assert len(stand_in.memory) == allocated - 3


def test_glue_fp16_and_its_absence_in_tensorrt_11(stand_in, sensitive_models):
    fp16 = create_backend("tensorrt", sensitive_models, strict=True, precision="fp16")
    header = _header(fp16)
    assert "FP16" in header["flags"] and "TF32" in header["flags"]  # TF32 only cleared for fp32
    fp32 = create_backend("tensorrt", sensitive_models, strict=True)
    assert fp32.engine_path != fp16.engine_path
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delattr(_Flag, "FP16")
    try:
        with pytest.raises(MfsError, match="TensorRT 11"):
            create_backend("tensorrt", sensitive_models, strict=True, precision="fp16", sides=(224,))
    finally:
        monkeypatch.undo()
    with pytest.raises(MfsError, match="fp32, fp16"):
        create_backend("tensorrt", sensitive_models, strict=True, precision="int8")


def test_glue_falls_back_to_refit_all_and_supplies_fused_weights(stand_in, sensitive_models, caplog, monkeypatch):
    monkeypatch.setattr(_Network, "refuse_marks", True)
    with caplog.at_level(logging.WARNING, logger="mfs_fast.backends"):
        backend = create_backend("tensorrt", sensitive_models, strict=True, sides=(224,))
    assert "BuilderFlag.REFIT" in caplog.text and backend.refit_mode == "all"
    assert "REFIT" in _header(backend)["flags"] and "REFIT_INDIVIDUAL" not in _header(backend)["flags"]
    # TensorRT fused the first pointwise kernel with a fixed weight: the backend must supply that one too
    backend.engine.fused = {"encoder.0.pointwise": "idn.final.7.weight"}
    fixed = backend.engine.weights["idn.final.7.weight"].copy()
    backend.engine.weights["idn.final.7.weight"][:] = 0  # the graph's value must come back from the ONNX file
    identity = synthetic_identity(sensitive_models, 1)
    backend.set_identity(identity)
    assert np.array_equal(backend.engine.weights["idn.final.7.weight"], fixed)
    images = np.random.rand(2, 3, 224, 224).astype(np.float32)
    for a, b in zip(backend.run(images), torch_idn(sensitive_models, images, identity)):
        assert np.abs(a - b).max() <= FP32_ATOL
    backend.engine.fused = {"encoder.0.pointwise": "not.in.the.graph"}
    with pytest.raises(MfsError, match="not.in.the.graph"):
        backend.set_identity(identity)
    with pytest.raises(MfsError, match="set_identity"):  # a failed refit leaves no usable identity
        backend.run(images)


def test_glue_rejects_a_stale_or_foreign_cached_engine(stand_in, sensitive_models, caplog):
    backend = create_backend("tensorrt", sensitive_models, strict=True, sides=(224,))
    builds = trb.TensorRTBackend.builds
    backend.engine_path.write_bytes(b"not an engine")
    with caplog.at_level(logging.WARNING, logger="mfs_fast.backends"):
        create_backend("tensorrt", sensitive_models, strict=True, sides=(224,))
    assert "could not be loaded; rebuilding" in caplog.text and trb.TensorRTBackend.builds == builds + 1
    header, _, body = backend.engine_path.read_bytes().partition(b"\n")
    header = json.loads(header)
    header["marked"] = header["marked"][1:]  # an engine that cannot refit encoder.0.depthwise
    backend.engine_path.write_bytes(json.dumps(header).encode() + b"\n" + body)
    with pytest.raises(MfsError, match="cannot refit \\['encoder.0.depthwise'\\]"):
        create_backend("tensorrt", sensitive_models, strict=True, sides=(224,))


# ---- the engine (TensorRT + CUDA GPU only) ------------------------------------------------------

@pytest.fixture(scope="module")
def tensorrt_ready():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed: the engine path (build, refit, run) "
                                           "cannot be exercised here")
    reason = trb._probe()
    if reason is not None:
        pytest.skip(f"TensorRT engine tests need a usable TensorRT + CUDA GPU: {reason}")


@pytest.fixture(scope="module")
def fp32_engine(tensorrt_ready, sensitive_models):
    return create_backend("tensorrt", sensitive_models, strict=True)


def _check_parity(backend, models, atol: float, cases=((224, 1), (224, 3), (256, 2), (224, 11))):
    """A -> B -> A on fresh random inputs: every output within ``atol`` of PyTorch, A's and B's
    outputs far apart (so a refit that did nothing would fail), A's outputs back after B."""
    first, second = synthetic_identity(models, 1), synthetic_identity(models, 2)
    rng = np.random.default_rng()
    inputs = {case: rng.random((case[1], 3, case[0], case[0]), dtype=np.float32) for case in cases}
    outputs, worst = [], 0.0
    for identity in (first, second, first):
        backend.set_identity(identity)
        outputs.append({})
        for case, images in inputs.items():  # batch 11 > max_batch 8: chunked
            ours, theirs = backend.run(images), torch_idn(models, images, identity)
            for a, b in zip(ours, theirs):
                assert a.shape == b.shape
                worst = max(worst, float(np.abs(a - b).max()))
            outputs[-1][case] = ours
    assert worst <= atol, f"max abs error {worst:.3g} > {atol}"
    for case in cases:
        assert np.abs(outputs[0][case][0] - outputs[1][case][0]).max() > 2 * atol  # B differs from A
        assert np.abs(outputs[0][case][0] - outputs[2][case][0]).max() <= atol  # and A comes back


def test_engine_fp32_parity_and_identity_switches_never_rebuild(fp32_engine, sensitive_models):
    builds, refits = trb.TensorRTBackend.builds, trb.TensorRTBackend.refits
    _check_parity(fp32_engine, sensitive_models, FP32_ATOL)
    assert trb.TensorRTBackend.builds == builds  # A -> B -> A: refits only
    assert trb.TensorRTBackend.refits == refits + 3


def test_engine_fp16_parity(tensorrt_ready, sensitive_models):
    backend = create_backend("tensorrt", sensitive_models, strict=True, precision="fp16")
    builds = trb.TensorRTBackend.builds
    _check_parity(backend, sensitive_models, FP16_ATOL, cases=((224, 1), (256, 2)))
    assert trb.TensorRTBackend.builds == builds


def test_engine_is_loaded_from_the_disk_cache(fp32_engine, sensitive_models):
    builds = trb.TensorRTBackend.builds
    again = create_backend("tensorrt", sensitive_models, strict=True)
    assert trb.TensorRTBackend.builds == builds and again.engine_path == fp32_engine.engine_path
    assert again.engine_path.is_file()
    identity = synthetic_identity(sensitive_models, 3)
    again.set_identity(identity)
    images = np.random.rand(1, 3, 224, 224).astype(np.float32)
    for a, b in zip(again.run(images), torch_idn(sensitive_models, images, identity)):
        assert np.abs(a - b).max() <= FP32_ATOL


def test_engine_refuses_what_it_was_not_built_for(fp32_engine, sensitive_models):
    fresh = create_backend("tensorrt", sensitive_models, strict=True)
    with pytest.raises(MfsError, match="set_identity"):
        fresh.run(np.zeros((1, 3, 224, 224), np.float32))
    fresh.set_identity(synthetic_identity(sensitive_models, 4))
    with pytest.raises(MfsError, match="sides="):
        fresh.run(np.zeros((1, 3, 192, 192), np.float32))
