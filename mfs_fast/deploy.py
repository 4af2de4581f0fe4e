"""Deployable IDN artefacts for a named target (`mfs-fast compile --target NAME`).

Each build writes the artefact and a small manifest beside it (inputs with shapes, outputs,
target, tuning-log hash), so a C++ or Java caller on the device knows what to feed: the frame,
then the identity kernels, which stay run-time inputs (a new face never needs a rebuild).
Linux targets get a shared library linked here (cross when needed). Android targets get the
object archive TVM writes plus the exact NDK link command; with ``ANDROID_NDK_HOME`` set it is
linked at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_path, atomic_write
from .errors import MfsError
from .targets import ANDROID_API, NamedTarget

MANIFEST_FORMAT = "mfs_fast-idn-artefact/1"
NDK_PREBUILT = "toolchains/llvm/prebuilt/linux-x86_64/bin"


@dataclass
class Artefact:
    """What `compile` wrote: the library (or archive), its manifest, and how to finish it."""

    library: Path | None
    archive: Path | None
    manifest: Path
    link_command: list[str] = field(default_factory=list)  # the NDK link that ran (ANDROID_NDK_HOME set)
    link_shell: str = ""  # Android: the NDK link as a shell command, to run by hand when not linked
    opencl_source: Path | None = None

    @property
    def linked(self) -> bool:
        return self.library is not None and self.library.is_file()


def ndk_compiler(api: int = ANDROID_API) -> Path | None:
    """The NDK's aarch64 Android clang++ under ``ANDROID_NDK_HOME``, or None when unset."""
    home = os.environ.get("ANDROID_NDK_HOME")
    if not home:
        return None
    compiler = Path(home) / NDK_PREBUILT / f"aarch64-linux-android{api}-clang++"
    if not compiler.is_file():
        raise MfsError(f"ANDROID_NDK_HOME={home} has no {NDK_PREBUILT}/{compiler.name} (an NDK r23+ layout)")
    return compiler


def candidate_linker(named: NamedTarget) -> str | None:
    """The compiler that links tuning candidates for ``named`` here (its devices have none)."""
    if named.artefact != "android":
        return named.cross_compiler
    compiler = ndk_compiler()
    if compiler is None:
        raise MfsError(f"tuning {named.name} links each candidate with the NDK: set ANDROID_NDK_HOME")
    return str(compiler)


def ndk_link_command(compiler: str, objects: list[str], output: str) -> list[str]:
    """The link TVM's own ``tvm.support.ndk.create_shared`` runs, spelled out for a shell."""
    return [compiler, "-o", output, *objects, "-shared", "-fPIC", "-lm"]


def _manifest_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.manifest.json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(named: NamedTarget, backend, shape: tuple[int, ...], weights: str, files: dict) -> dict:
    """The artefact's contract: input order and shapes, outputs, target, tuning log, provenance."""
    from .backends.onnx_export import IMAGE_INPUT, OUTPUTS
    from .backends.tvm_tuning import log_dir, log_hash
    from .models import idn_layer_shapes

    batch, _, height, width = shape
    inputs = [{"name": IMAGE_INPUT, "shape": list(shape), "dtype": "float32",
               "role": "aligned RGB frames in [0, 1], NCHW"}]
    inputs += [{"name": name, "shape": list(kernel), "dtype": "float32",
                "role": "identity kernel (from the IIN, once per source face)"}
               for name, kernel in idn_layer_shapes().items()]
    return {
        "format": MANIFEST_FORMAT,
        "entry": "main (Relax VM: vm_load_executable, vm_initialization, then main(*inputs))",
        "inputs": inputs,
        "outputs": [{"name": OUTPUTS[0], "shape": [batch, 3, height, width], "dtype": "float32"},
                    {"name": OUTPUTS[1], "shape": [batch, 1, height, width], "dtype": "float32"}],
        "target": {"name": named.name, "tvm": named.target},
        "tuning_log": {"dir": f"tuning_logs/{log_dir(named.tuning_target).name}",
                       "hash": log_hash(named.tuning_target)} if named.cpu else None,
        "tvm_version": backend.tvm.__version__,
        "model_hash": backend.model_hash,
        "weights": weights,
        "files": files,
    }


def _backend(named: NamedTarget, models):
    from .backends.tvm_backend import TVMBackend, TVMCudaBackend

    cls = TVMCudaBackend if named.backend == "tvm-cuda" else TVMBackend
    return cls(models, target=named.target, tuning_target=named.tuning_target)


def _fcompile(named: NamedTarget):
    if named.cross_compiler is None:
        return None
    from tvm.support import cc

    return cc.cross_compiler(named.cross_compiler)


def _opencl_source(executable) -> str | None:
    def find(module):
        if module.kind == "opencl":
            return module
        return next((found for m in module.imports if (found := find(m)) is not None), None)

    module = find(executable.mod)
    return module.inspect_source() if module is not None else None


def unlinked_android_command(archive: Path, output: Path, members: list[str]) -> str:
    """The shell command (run in the artefact's folder) that links the archive with the NDK."""
    objects = f"{output.stem}_objs"
    compiler = f'"$ANDROID_NDK_HOME/{NDK_PREBUILT}/aarch64-linux-android{ANDROID_API}-clang++"'
    link = ndk_link_command("CXX", [f"{objects}/{name}" for name in members if name.endswith(".o")], output.name)
    return (f"mkdir -p {objects} && tar -xf {shlex.quote(archive.name)} -C {objects} && "
            f"{compiler} {shlex.join(link[1:])}")


def link_android(archive: Path, output: Path, compiler: Path | str) -> list[str]:
    """Link TVM's object archive into an Android shared library with the NDK (atomically)."""
    with tempfile.TemporaryDirectory(prefix="mfs-ndk-") as tmp, tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
        objects = sorted(str(p) for p in Path(tmp).iterdir() if p.suffix == ".o")
        with atomic_path(output) as partial:
            command = ndk_link_command(str(compiler), objects, str(partial))
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise MfsError(f"NDK link failed ({shlex.join(command)}):\n{result.stdout}{result.stderr}")
        return command


def compile_artefact(named: NamedTarget, models, output: Path, shape: tuple[int, ...],
                     weights: str = "random") -> Artefact:
    """Build the IDN for ``named`` and write its artefact and manifest next to ``output``."""
    from .backends.tvm_backend import export_atomically

    backend = _backend(named, models)
    executable = backend.build(shape)
    output.parent.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict] = {}
    artefact = Artefact(library=None, archive=None, manifest=_manifest_path(output))
    source = _opencl_source(executable)
    if source is not None:  # kept beside the library for reading / offline compile checks
        artefact.opencl_source = output.with_name(f"{output.stem}.cl")
        atomic_write(artefact.opencl_source, source.encode())
        files["opencl_source"] = {"path": artefact.opencl_source.name, "sha256": _sha256(artefact.opencl_source)}
    if named.artefact == "android":
        archive = export_atomically(executable, output.with_name(f"{output.stem}.tar"))
        artefact.archive = archive
        with tarfile.open(archive) as tar:
            members = tar.getnames()
        files["archive"] = {"path": archive.name, "sha256": _sha256(archive), "members": members}
        artefact.link_shell = unlinked_android_command(archive, output, members)
        files["link_command"] = artefact.link_shell  # how to redo the link by hand, in the artefact's folder
        compiler = ndk_compiler()
        if compiler is not None:
            artefact.link_command = link_android(archive, output, compiler)
            artefact.library = output
    else:
        artefact.library = export_atomically(executable, output, _fcompile(named))
    if artefact.library is not None:
        files["library"] = {"path": artefact.library.name, "sha256": _sha256(artefact.library)}
    data = manifest(named, backend, shape, weights, files)
    atomic_write(artefact.manifest, (json.dumps(data, indent=1) + "\n").encode())
    return artefact


def device_library(named: NamedTarget, models, shape: tuple[int, ...]) -> Path:
    """A linked library for running ``named`` over RPC, built once and cached on disk."""
    backend = _backend(named, models)
    path = backend._library_path(shape)
    if not path.is_file():
        if named.artefact == "android" and ndk_compiler() is None:
            raise MfsError(f"running {named.name} over RPC needs a linked library: set ANDROID_NDK_HOME to an NDK")
        artefact = compile_artefact(named, models, path, shape)
        if not artefact.linked:
            raise MfsError(f"no linked library for {named.name}")
    return path
