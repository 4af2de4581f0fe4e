"""Apache TVM (0.27, Relax) backend: the IDN compiled per input shape, identity kernels as inputs.

The graph is the same kernels-as-inputs ONNX export the ONNX Runtime backend uses, imported
into Relax with static shapes. ``tvm`` builds it for the host CPU, with the bilinear upsamples
(and the decoder concats) replaced by the hand-written kernel of tvm_kernels and every other
kernel scheduled from the MetaSchedule database in tuning_logs/<target>/ when there is one
(``mfs-fast tune`` writes it; untuned is ~10x slower). ``tvm-cuda`` builds the same graph for
an NVIDIA GPU with dlight's default schedules. Libraries are cached on disk, keyed by (model
hash, target, input shape, TVM version, tuning-log hash, graph-code hash). Identity kernels
live in preallocated device arrays that ``set_identity`` overwrites (``copyfrom``): an
identity change never recompiles.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import MfsError
from ..models import FaceSwapModels, IdentityWeights, idn_layer_shapes
from ._cache import cache_dir, model_hash
from ._registry import register_backend
from .base import checked_batch
from .onnx_export import IMAGE_INPUT, cached_idn_onnx
from .tvm_kernels import replace_upsamples
from .tvm_tuning import apply_tuning, log_hash, lower_for_tuning


def _probe() -> str | None:
    if importlib.util.find_spec("tvm") is None:
        return "apache-tvm is not installed (pip install apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1)"
    return None


def host_target(prefer_tuned: bool = True) -> dict:
    """LLVM target for this CPU from its instruction-set flags (x86-64 levels; generic elsewhere).

    ``num-cores`` is the machine's, so one tuning log serves every thread count
    (TVM_NUM_THREADS sets how many run). With ``prefer_tuned`` the highest level this CPU
    runs *that has a committed tuning log* wins (an AVX-512 CPU runs the x86-64-v3 schedules
    far faster than untuned v4 code); without one, or for tuning, the highest level.
    """
    machine = os.uname().machine
    cores = os.cpu_count()
    if machine in ("aarch64", "arm64"):
        return {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"], "num-cores": cores}
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    levels = (["x86-64-v4"] if "avx512f" in flags else []) + (["x86-64-v3"] if {"avx2", "fma"} <= flags else [])
    candidates = [{"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": level, "num-cores": cores}
                  for level in levels + ["x86-64"]]
    if prefer_tuned:
        for target in candidates:
            if log_hash(target) is not None:
                return target
    return candidates[0]


def _graph_code_hash() -> str:
    """Hash of the sources that shape the built graph, so a code change never loads a stale library."""
    digest = hashlib.sha256()
    for module in ("tvm_backend.py", "tvm_kernels.py", "tvm_tuning.py", "onnx_export.py"):
        digest.update((Path(__file__).with_name(module)).read_bytes())
    return digest.hexdigest()[:16]


def cuda_target(arch: str | None = None) -> dict:
    """CUDA target for this machine's first GPU (``sm_XY`` from its compute capability).

    Without a visible GPU (cross-compiling for one) the default is ``sm_90`` (H100/H200).
    """
    if arch is None:
        import tvm

        device = tvm.cuda(0)
        arch = f"sm_{device.compute_version.replace('.', '')}" if device.exist else "sm_90"
    return {"kind": "cuda", "arch": arch, "host": host_target()}


def _cuda_probe() -> str | None:
    reason = _probe()
    if reason:
        return reason
    import tvm

    if not tvm.cuda(0).exist:
        return "no CUDA GPU visible to TVM (tvm.cuda(0).exist is False); `mfs-fast compile --backend tvm-cuda` still builds for one"
    return None


def is_cpu_target(target: dict) -> bool:
    return target["kind"] == "llvm"


def export_atomically(executable, path: Path, fcompile=None) -> Path:
    """Export a TVM executable to ``path`` via a temporary file, so no reader sees half a library."""
    with atomic_path(path, tag=path.suffix.lstrip(".") or "so") as tmp:  # TVM picks the format by suffix
        executable.export_library(str(tmp), **({"fcompile": fcompile} if fcompile else {}))
    return path


@register_backend("tvm", probe=_probe)
class TVMBackend:
    """The IDN compiled by TVM for the host CPU (tuned from tuning_logs/ when a log matches)."""

    name = "tvm"
    builds = 0  # class-wide count of compilations, so tests can prove identity changes never build

    def __init__(self, models: FaceSwapModels, threads: int | None = None, target: dict | None = None,
                 tuning_target: dict | None = None) -> None:
        if threads:
            os.environ.setdefault("TVM_NUM_THREADS", str(threads))  # read when TVM's pool starts
        # idle workers sleep instead of spinning: spinning starved whatever ran next in the
        # process (the detector, other backends): ORT beside TVM went 30 -> 56 ms at 2 threads
        os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "0")
        import tvm

        self.tvm = tvm
        self.target = target or self.default_target()
        # whose tuning log schedules the build (e.g. Android arm64 reuses the aarch64-linux log)
        self.tuning_target = tuning_target or self.target
        self.device = tvm.cpu() if is_cpu_target(self.target) else tvm.device(self.target["kind"], 0)
        self.onnx_path = cached_idn_onnx(models.idn)
        self.model_hash = model_hash(models.idn)
        self._kernels: dict | None = None  # allocated on first use: compiling needs no device
        self._machines: dict[tuple[int, ...], tuple[object, list]] = {}
        self._has_identity = False

    def default_target(self) -> dict:
        return host_target()

    def _kernel_arrays(self) -> dict:
        """Identity kernels as preallocated device arrays, in the graph's input order."""
        if self._kernels is None:
            self._kernels = {name: self.tvm.runtime.empty(shape, "float32", self.device)
                             for name, shape in idn_layer_shapes().items()}
        return self._kernels

    def set_identity(self, weights: IdentityWeights) -> None:
        for name, tensor in weights.tensors():
            self._kernel_arrays()[name].copyfrom(np.ascontiguousarray(tensor.detach().cpu().numpy()))
        self._has_identity = True

    def _library_path(self, shape: tuple[int, ...]) -> Path:
        key = json.dumps({"model": self.model_hash, "target": self.target, "shape": shape, "code": _graph_code_hash(),
                          "tvm": self.tvm.__version__, "tuning": log_hash(self.tuning_target)}, sort_keys=True)
        return cache_dir() / "tvm" / f"idn-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"

    def import_module(self, shape: tuple[int, ...]):
        """The IDN as a Relax module for one input shape (kernels as the inputs after ``image``).

        The bilinear upsamples (and the concats feeding them) are already replaced by the
        hand-written kernel of tvm_kernels, so tuning and building see the same graph.
        """
        import onnx
        from tvm.relax.frontend.onnx import from_onnx

        shapes = {IMAGE_INPUT: list(shape), **{k: list(v) for k, v in idn_layer_shapes().items()}}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Renaming name")  # "a.b" -> "a_b", expected
            module = from_onnx(onnx.load(str(self.onnx_path)), shape_dict=shapes, keep_params_in_input=False)
        params = [p.name for p in module["main"].params]
        expected = [IMAGE_INPUT, *(name.replace(".", "_") for name in idn_layer_shapes())]
        if params != expected:  # run() passes kernels positionally in this order
            raise MfsError(f"unexpected TVM function parameters {params[:4]}...; expected {expected[:4]}...")
        # the hand-written upsample is a CPU schedule; GPU builds keep resize2d for dlight
        return replace_upsamples(module) if is_cpu_target(self.target) else module

    def schedule(self, module, tvm_target):
        """CPU: the MetaSchedule database of the target (if any). GPU: dlight's default rules."""
        if is_cpu_target(self.target):
            return apply_tuning(module, tvm_target, self.tuning_target)
        from tvm.s_tir import dlight

        gpu = dlight.gpu
        with tvm_target:
            lowered = lower_for_tuning(module, tvm_target)
            return dlight.ApplyDefaultSchedule(gpu.Matmul(), gpu.GEMV(), gpu.Reduction(), gpu.GeneralReduction(),
                                               gpu.Fallback())(lowered)

    def build(self, shape: tuple[int, ...]):
        """Compile the IDN for one input shape; returns the TVM executable (not yet exported)."""
        tvm_target = self.tvm.target.Target(self.target)
        module = self.schedule(self.import_module(shape), tvm_target)
        with tvm_target:  # CUDA codegen reads the arch from the current target
            executable = self.tvm.compile(module, target=tvm_target)
        TVMBackend.builds += 1
        return executable

    def compile_library(self, shape: tuple[int, ...], path: Path, fcompile=None) -> Path:
        """Build the IDN for ``shape`` and export it to ``path`` atomically (a deployable .so).

        ``fcompile`` links for another machine (e.g. ``tvm.support.cc.cross_compiler(...)``);
        a ``.tar`` path writes the object archive instead of linking.
        """
        return export_atomically(self.build(shape), path, fcompile)

    def _machine(self, shape: tuple[int, ...]):
        if shape not in self._machines:
            from tvm import relax

            path = self._library_path(shape)
            if not path.is_file():
                self.compile_library(shape, path)
            vm = relax.VirtualMachine(self.tvm.runtime.load_module(str(path)), self.device)
            # positional, in the graph's input order (checked when built)
            self._machines[shape] = (vm, list(self._kernel_arrays().values()))
        return self._machines[shape]

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = checked_batch(batch, self._has_identity)
        vm, kernels = self._machine(batch.shape)
        faces, masks = vm["main"](self.tvm.runtime.tensor(batch, self.device), *kernels)
        return faces.numpy(), masks.numpy()


@register_backend("tvm-cuda", probe=_cuda_probe)
class TVMCudaBackend(TVMBackend):
    """The same graph built for an NVIDIA GPU (dlight schedules); identity kernels live on the GPU."""

    name = "tvm-cuda"

    def default_target(self) -> dict:
        return cuda_target()
