"""TVM specifics: the hand-written upsample kernel, the graph rewrite, GPU builds, RPC tuning."""

import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mfs_fast.backends import available_backends

pytestmark = pytest.mark.skipif("tvm" not in available_backends(), reason="apache-tvm not installed")


def _host():
    import tvm

    from mfs_fast.backends.tvm_backend import host_target

    return tvm.target.Target(host_target())


@pytest.mark.parametrize("batch,channels,height,width", [(1, (5,), 7, 7), (2, (3, 4), 5, 9), (1, (16, 8), 14, 14)])
def test_upsample_kernel_matches_torch_align_corners(batch, channels, height, width):
    import tvm

    from mfs_fast.backends.tvm_kernels import upsample2x_kernel

    name, func = upsample2x_kernel(batch, channels, height, width)
    library = tvm.tirx.build(tvm.IRModule({name: func}), target=_host())
    parts = [np.random.rand(batch, c, height, width).astype(np.float32) for c in channels]
    out = tvm.runtime.empty((batch, sum(channels), 2 * height, 2 * width), "float32")
    library[name](*[tvm.runtime.tensor(p) for p in parts], out)
    expected = F.interpolate(torch.cat([torch.from_numpy(p) for p in parts], 1), scale_factor=2,
                             mode="bilinear", align_corners=True).numpy()
    assert np.abs(out.numpy() - expected).max() <= 1e-5


def test_graph_rewrite_removes_every_resize_and_concat(official_models):
    from mfs_fast.backends.tvm_backend import TVMBackend

    module = TVMBackend(official_models).import_module((1, 3, 224, 224))
    script = module["main"].script()
    assert "resize2d" not in script and "R.concat" not in script
    kernels = [g.name_hint for g in module.get_global_vars() if g.name_hint.startswith("mfs_upsample2x")]
    # 5 mask head + 4 decoder + 1 output head, less the duplicate upsample of e5 (mask head and
    # decoder) merged into one; 3 read the two halves of a decoder concat directly
    assert len(kernels) == 9
    assert sum(k.count("_") == 3 for k in kernels) == 3  # mfs_upsample2x_1x256_256x14x14


def test_hand_written_kernels_are_never_tuned(official_models):
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from mfs_fast.backends.tvm_backend import TVMBackend
    from mfs_fast.backends.tvm_tuning import is_hand_scheduled, lower_for_tuning

    backend = TVMBackend(official_models)
    target = tvm.target.Target(backend.target)
    tasks = ms.relax_integration.extract_tasks(lower_for_tuning(backend.import_module((1, 3, 224, 224)), target), target)
    hand = [t.task_name for t in tasks if is_hand_scheduled(t)]
    assert len(hand) == 9 and all(name.startswith("mfs_upsample2x") for name in hand)


def _imported(module, kind: str):
    if module.kind == kind:
        return module
    return next((found for m in module.imports if (found := _imported(m, kind)) is not None), None)


def test_cuda_build_without_a_gpu(official_models, tmp_path):
    """The same graph builds for sm_90 here, exports, and nvcc (when present) compiles its kernels."""
    from mfs_fast.backends.tvm_backend import TVMCudaBackend, cuda_target

    backend = TVMCudaBackend(official_models, target=cuda_target("sm_90"))
    executable = backend.build((1, 3, 224, 224))
    cuda = _imported(executable.mod, "cuda")
    assert cuda is not None, "no CUDA module in the build"
    source = cuda.inspect_source()
    assert source.count("__global__") >= 40  # every fused op became a CUDA kernel
    library = backend.compile_library((1, 3, 224, 224), tmp_path / "idn_cuda.so")
    assert library.stat().st_size > len(source)  # the kernels travel inside the library
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH: the CUDA source was generated but not compiled")
    (tmp_path / "idn.cu").write_text(source)
    result = subprocess.run([nvcc, "-arch=sm_90", "-cubin", "-o", str(tmp_path / "idn.cubin"), str(tmp_path / "idn.cu")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "idn.cubin").stat().st_size > 10_000


@pytest.mark.skipif("tvm-cuda" not in available_backends(), reason="no CUDA GPU visible to TVM on this machine")
def test_cuda_backend_parity(official_models):
    from mfs_fast.backends import create_backend

    backend = create_backend("tvm-cuda", official_models)
    weights = official_models.identity_weights(torch.rand(1, 3, 112, 112))
    backend.set_identity(weights)
    image = np.random.rand(2, 3, 224, 224).astype(np.float32)
    faces, masks = backend.run(image)
    with torch.no_grad():
        ref_faces, ref_masks = official_models.idn(torch.from_numpy(image), weights)
    assert np.abs(faces - ref_faces.numpy()).max() <= 1e-4
    assert np.abs(masks - ref_masks.numpy()).max() <= 1e-4


def test_rpc_spec_is_validated():
    from mfs_fast.backends.tvm_tuning import parse_rpc

    assert parse_rpc("127.0.0.1:9190:rk3588") == ("127.0.0.1", 9190, "rk3588")
    for bad in ("127.0.0.1:9190", "host:port:key", ":9190:key", "127.0.0.1:9190:"):
        with pytest.raises(ValueError, match="TRACKER_HOST:PORT:KEY"):
            parse_rpc(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_module():
    from tvm import relax

    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 16, 16), "float32"))
    w = relax.Var("w", relax.TensorType((16, 8, 1, 1), "float32"))
    with builder.function("main", [x, w]):
        with builder.dataflow():
            y = builder.emit(relax.op.nn.relu(relax.op.nn.conv2d(x, w)))
            out = builder.emit_output(y)
        builder.emit_func_output(out)
    return builder.get()


def test_tuning_through_an_rpc_tracker(tmp_path):
    """`mfs-fast tune --rpc` measures on a device behind a tracker (here a loopback server)."""
    from tvm.s_tir import meta_schedule as ms

    from mfs_fast.backends.tvm_backend import host_target
    from mfs_fast.backends.tvm_tuning import tune

    tracker_port, server_port = _free_port(), _free_port()
    env = {**os.environ, "TVM_NUM_THREADS": "1"}
    tracker = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                                "--port", str(tracker_port), "--port-end", str(tracker_port + 1)], env=env)
    server = None
    try:
        time.sleep(3)
        server = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
                                   "--port", str(server_port), "--port-end", str(server_port + 1),
                                   "--tracker", f"127.0.0.1:{tracker_port}", "--key", "mfs-test"], env=env)
        time.sleep(3)
        folder = tune(_tiny_module(), host_target(), trials=4, per_task=4,
                      rpc=f"127.0.0.1:{tracker_port}:mfs-test", logs=tmp_path / "db")
        database = ms.database.JSONDatabase(work_dir=str(folder))
        records = database.get_all_tuning_records()
        assert records and all(r.run_secs and float(r.run_secs[0]) < 1e9 for r in records)  # measured remotely
    finally:
        for process in (server, tracker):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
