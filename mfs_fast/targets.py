"""The one table of named TVM targets for `mfs-fast compile / tune / rpc`.

A name stands for a TVM target dict plus what deploying to it needs: the kind of artefact
(a shared library, or an object archive to link with the Android NDK), the cross compiler,
and which tuning log schedules it (the Android CPU target shares the aarch64-linux log: same
instructions, only the ABI of the final link differs). Any other ``--target`` is read as a
TVM target in JSON dict form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .errors import MfsError

ANDROID_API = 28  # the NDK clang++ wrapper name carries the minimum API level
AARCH64_LINUX = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"], "num-cores": 4}
AARCH64_ANDROID = {"kind": "llvm", "mtriple": "aarch64-linux-android", "mattr": ["+neon"], "num-cores": 4}


@dataclass(frozen=True)
class NamedTarget:
    """A deployable target: TVM target dict, artefact kind, cross compiler, tuning-log owner."""

    name: str
    description: str
    target: dict = field(default_factory=dict)
    artefact: str = "so"  # "so": shared library written directly; "android": object archive + NDK link
    cross_compiler: str | None = None  # g++-compatible driver for the final link (None: the host's)
    tuning: dict | None = None  # target whose tuning log schedules this one (None: its own)
    backend: str = "tvm"  # the TVMBackend subclass that builds it

    @property
    def tuning_target(self) -> dict:
        return self.tuning or self.target

    @property
    def cpu(self) -> bool:
        return self.target.get("kind") == "llvm"


def _host() -> NamedTarget:
    from .backends.tvm_backend import host_target

    return NamedTarget("host", "this machine's CPU (x86-64 level or aarch64 from its flags)", host_target())


def _table() -> dict[str, NamedTarget]:
    """Every named target; ``host`` is resolved on this machine."""
    from .backends.tvm_backend import cuda_target

    entries = [
        _host(),
        NamedTarget("aarch64-linux", "64-bit ARM Linux board or phone CPU (NEON), e.g. Raspberry Pi 4/5, RK3588",
                    AARCH64_LINUX, cross_compiler="aarch64-linux-gnu-g++"),
        NamedTarget("android-arm64", f"Android arm64-v8a CPU (NEON), linked with the NDK (API {ANDROID_API})",
                    AARCH64_ANDROID, artefact="android", tuning=AARCH64_LINUX),
        NamedTarget("android-mali", "Android Mali GPU through OpenCL (needs a TVM runtime built with USE_OPENCL)",
                    {"kind": "opencl", "device": "mali", "host": AARCH64_ANDROID}, artefact="android"),
        NamedTarget("cuda-sm90", "NVIDIA Hopper GPU (H100/H200), CUDA, built here without a GPU",
                    cuda_target("sm_90"), backend="tvm-cuda"),
    ]
    return {entry.name: entry for entry in entries}


def target_names() -> list[str]:
    """Names accepted by ``--target`` besides JSON."""
    return list(_table())


def resolve_target(spec: str) -> NamedTarget:
    """A ``--target`` value -> NamedTarget: a name from the table, or a TVM target as JSON."""
    spec = spec.strip()
    if spec.startswith(("{", "[")):
        try:
            target = json.loads(spec)
        except json.JSONDecodeError as error:
            raise MfsError(f"--target is not valid JSON ({error}): {spec!r}") from error
        if not isinstance(target, dict) or "kind" not in target:
            raise MfsError(f'--target JSON must be a TVM target dict with a "kind", got {spec!r}')
        return _from_json(target)
    table = _table()
    if spec not in table:
        raise MfsError(f"unknown target {spec!r}; known: {', '.join(target_names())}, or a TVM target as JSON")
    return table[spec]


def _from_json(target: dict) -> NamedTarget:
    """A custom target: cross-links aarch64 Linux with the Debian cross compiler, Android via the NDK."""
    triple = (target.get("host") or target).get("mtriple", "")
    artefact = "android" if "android" in triple else "so"
    cross = "aarch64-linux-gnu-g++" if triple.startswith("aarch64-linux-gnu") else None
    backend = "tvm-cuda" if target["kind"] == "cuda" else "tvm"
    return NamedTarget("custom", "a TVM target given as JSON", target, artefact=artefact, cross_compiler=cross,
                       backend=backend)
