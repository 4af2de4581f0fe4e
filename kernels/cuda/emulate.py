"""Build the CUDA sources of mfs_fast._cuda as a CPU-emulated Python module, ``_cuda_emu``.

The kernels and the engine are compiled by the host C++ compiler with ``-DMFS_CUDA_EMULATE``
(cuda_emu.hpp stands in for the CUDA runtime: every GPU thread is a fiber, barriers switch
between them, memory starts as NaN, launches and copies are checked). Same sources, same
bindings, same results up to float rounding; thousands of times slower than a GPU. The tests
use it where no GPU is present, and ``bench/gpu_check.py --emulate`` runs the GPU check on it.

    python kernels/cuda/emulate.py            # build (cached by source hash), print the path
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SOURCES = ("blocks.cu", "cuda_idn.cpp", "cuda_module.cpp", "bind/devices.cpp", "bind/blocks.cpp", "bind/fused_idn.cpp")
HEADERS = ("blocks.cuh", "cuda_compat.hpp", "cuda_emu.hpp", "cuda_idn.hpp", "bind/bind.hpp", "../head_weights.hpp",
           "../py_arrays.hpp", "../bind/idn_args.hpp")
FLAGS = ("-std=c++17", "-O3", "-fPIC", "-DMFS_CUDA_EMULATE", "-Wall", "-Wextra", "-Wno-unknown-pragmas")
MODULE = "_cuda_emu"


def _flags() -> tuple[str, ...]:
    # -march=native about halves the emulator's time (its per-thread loops vectorise); the
    # cache key below includes this CPU's feature flags, so a build never moves to another CPU
    native = os.environ.get("MFS_CUDA_EMU_NATIVE", "1") != "0"
    return (*FLAGS, "-march=native") if native else FLAGS


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def _key(cxx: str) -> str:
    h = hashlib.sha256()
    for name in (*SOURCES, *HEADERS):
        h.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    h.update(" ".join((cxx, *_flags(), sys.version, sysconfig.get_config_var("EXT_SUFFIX") or "", platform.machine(),
                       _cpu())).encode())
    return h.hexdigest()[:16]


def build(out_dir: str | os.PathLike | None = None, jobs: int = 2, verbose: bool = False) -> Path:
    """Compile (unless a build of these exact sources exists) and return the module's path."""
    import pybind11

    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    folder = Path(out_dir or ROOT / "build" / "cuda-emu") / _key(cxx)
    target = folder / (MODULE + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    includes = ["-I", str(HERE), "-I", pybind11.get_include(), "-I", sysconfig.get_paths()["include"]]
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        objects, running = [], []
        for src in SOURCES:
            obj = Path(tmp) / (src.replace("/", "_") + ".o")
            cmd = [cxx, *_flags(), *includes, "-x", "c++", "-c", str(HERE / src), "-o", str(obj)]
            if verbose:
                print(" ".join(cmd), flush=True)
            running.append((src, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
            objects.append(str(obj))
            if len(running) >= max(1, jobs):
                _wait(running.pop(0))
        while running:
            _wait(running.pop(0))
        partial = Path(tmp) / target.name
        subprocess.run([cxx, "-shared", *objects, "-o", str(partial)], check=True)
        os.replace(partial, target)  # atomic: a concurrent build never sees half a module
    return target


def _wait(job) -> None:
    src, proc = job
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"compiling {src} for the CUDA emulator failed:\n{out}")
    if out.strip():
        print(out, file=sys.stderr)


def load(path: str | os.PathLike | None = None) -> ModuleType:
    """Import the emulated module (building it first when no path is given)."""
    path = Path(path) if path else build()
    loader = importlib.machinery.ExtensionFileLoader(MODULE, str(path))
    spec = importlib.util.spec_from_file_location(MODULE, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


if __name__ == "__main__":
    print(build(verbose="-v" in sys.argv))
