"""Named targets, deployable artefacts and their manifests, the Android link, the Mali OpenCL kernels.

Builds here are real TVM builds of the IDN for phones (no device needed): one Android arm64 CPU
build linked by a stand-in NDK, and one Mali OpenCL build whose generated kernels are compiled
by clang's OpenCL front end.
"""

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from mfs_fast.backends import available_backends
from mfs_fast.errors import MfsError

needs_tvm = pytest.mark.skipif("tvm" not in available_backends(), reason="apache-tvm not installed")
SHAPE = (1, 3, 224, 224)
EM_AARCH64 = 183


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and header[16] == 3, f"{path} is not an ELF shared object"  # ET_DYN
    return int.from_bytes(header[18:20], "little")


def test_target_table_names_and_errors():
    from mfs_fast.targets import resolve_target, target_names

    assert target_names() == ["host", "aarch64-linux", "android-arm64", "android-mali", "cuda-sm90"]
    arm = resolve_target("aarch64-linux")
    assert arm.target["mtriple"] == "aarch64-linux-gnu" and arm.cross_compiler == "aarch64-linux-gnu-g++"
    android = resolve_target("android-arm64")
    assert android.artefact == "android" and android.tuning_target == arm.target  # one log for both
    assert resolve_target("android-mali").target["host"]["mtriple"] == "aarch64-linux-android"
    assert resolve_target("cuda-sm90").backend == "tvm-cuda"
    custom = resolve_target('{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "num-cores": 8}')
    assert custom.cross_compiler == "aarch64-linux-gnu-g++" and custom.target["num-cores"] == 8
    with pytest.raises(MfsError, match="unknown target 'pixel'.*aarch64-linux"):
        resolve_target("pixel")
    for bad in ('{"kind": ', '["llvm"]'):
        with pytest.raises(MfsError, match="--target"):
            resolve_target(bad)


def test_rpc_addresses_are_validated():
    from mfs_fast.rpc import RpcAddress, parse_rpc_address

    assert parse_rpc_address("127.0.0.1:9090") == RpcAddress("127.0.0.1", 9090, None)
    assert parse_rpc_address("10.0.0.2:9190:mali") == RpcAddress("10.0.0.2", 9190, "mali")
    for bad in ("127.0.0.1", "host:port", ":9090", "127.0.0.1:99999", "a:1:b:c", "127.0.0.1:9190:"):
        with pytest.raises(MfsError, match="HOST:PORT"):
            parse_rpc_address(bad)
    with pytest.raises(MfsError, match="TRACKER_HOST:PORT:KEY"):
        parse_rpc_address("127.0.0.1:9090", need_key=True)


@needs_tvm
def test_unreachable_rpc_is_a_clear_error():
    import socket

    from mfs_fast.rpc import connect, parse_rpc_address

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for spec in (f"127.0.0.1:{port}", f"127.0.0.1:{port}:phone"):
        with pytest.raises(MfsError, match="cannot reach TVM RPC"):
            connect(parse_rpc_address(spec))


def _fake_ndk(folder: Path) -> Path:
    """An NDK layout whose Android clang++ is Debian's aarch64 cross g++ (the link is the same)."""
    compiler = folder / "toolchains/llvm/prebuilt/linux-x86_64/bin/aarch64-linux-android28-clang++"
    compiler.parent.mkdir(parents=True)
    compiler.write_text('#!/bin/sh\nexec aarch64-linux-gnu-g++ "$@"\n')
    compiler.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def models():
    from mfs_fast.models import FaceSwapModels

    return FaceSwapModels.random()


@needs_tvm
@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None, reason="needs aarch64-linux-gnu-g++ "
                    "(apt-get install g++-aarch64-linux-gnu; ./run.sh does it) to stand in for the NDK")
def test_android_artefact_manifest_and_ndk_link(models, tmp_path, monkeypatch):
    from mfs_fast.deploy import compile_artefact, unlinked_android_command
    from mfs_fast.models import idn_layer_shapes
    from mfs_fast.targets import resolve_target

    monkeypatch.setenv("ANDROID_NDK_HOME", str(_fake_ndk(tmp_path / "ndk")))
    out = tmp_path / "out" / "idn_android.so"
    artefact = compile_artefact(resolve_target("android-arm64"), models, out, SHAPE)
    assert artefact.linked and artefact.link_command[0].endswith("aarch64-linux-android28-clang++")
    assert _elf_machine(out) == EM_AARCH64
    manifest = json.loads(artefact.manifest.read_text())
    names = [i["name"] for i in manifest["inputs"]]
    assert names == ["image", *idn_layer_shapes()] and manifest["inputs"][0]["shape"] == list(SHAPE)
    assert [o["shape"] for o in manifest["outputs"]] == [[1, 3, 224, 224], [1, 1, 224, 224]]
    assert manifest["target"]["name"] == "android-arm64"
    assert manifest["tuning_log"]["dir"] == "tuning_logs/llvm-aarch64-neon-4c"  # shared with aarch64-linux
    assert set(manifest["files"]) >= {"archive", "library", "link_command"}
    assert sorted(tarfile.open(artefact.archive).getnames()) == ["devc.o", "lib0.o"]

    # without ANDROID_NDK_HOME the printed command does the same link by hand
    command = unlinked_android_command(artefact.archive, tmp_path / "out" / "by_hand.so", ["devc.o", "lib0.o"])
    assert command.startswith("mkdir -p by_hand_objs && tar -xf idn_android.tar") and "-shared -fPIC -lm" in command
    subprocess.run(["sh", "-c", command], cwd=tmp_path / "out", check=True, env={**os.environ})
    assert _elf_machine(tmp_path / "out" / "by_hand.so") == EM_AARCH64


@needs_tvm
def test_mali_opencl_kernels_are_generated_and_compile(tmp_path, monkeypatch, capsys):
    from mfs_fast.cli import main

    monkeypatch.delenv("ANDROID_NDK_HOME", raising=False)
    assert main(["compile", "--target", "android-mali", "-o", str(tmp_path / "idn_mali.so")]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((tmp_path / "idn_mali.manifest.json").read_text())
    link = manifest["files"]["link_command"]
    assert "aarch64-linux-android28-clang++" in link and f"\n  {link}\n" in printed  # the exact NDK command
    assert not (tmp_path / "idn_mali.so").exists() and (tmp_path / "idn_mali.tar").is_file()
    assert manifest["target"]["tvm"]["kind"] == "opencl" and manifest["tuning_log"] is None
    cl_file = tmp_path / manifest["files"]["opencl_source"]["path"]
    source = cl_file.read_text()
    kernels = source.count("\n// Function: ") + source.startswith("// Function: ")
    assert kernels >= 30, "every fused op should be an OpenCL kernel"
    clang = shutil.which("clang") or shutil.which("clang-14")
    if clang is None:
        pytest.skip("clang not installed (apt-get install clang; ./run.sh does it): kernels generated, not compiled")
    ir = tmp_path / "idn_mali.ll"
    result = subprocess.run([clang, "-x", "cl", "-cl-std=CL1.2", "-Xclang", "-finclude-default-header",
                             "-target", "spir64", "-O1", "-S", "-emit-llvm", "-o", str(ir),
                             str(cl_file)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(re.findall(r"^define .*spir_kernel", ir.read_text(), re.M)) == kernels
