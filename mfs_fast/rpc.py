"""Run, check and time the compiled IDN on a device behind TVM RPC (`mfs-fast rpc run|bench`).

``--rpc HOST:PORT`` talks to an RPC server directly; ``HOST:PORT:KEY`` asks a tracker for a
device registered under KEY (what phones and `scripts/arm-rpc-server.sh` do). The library is
uploaded, loaded in a Relax VM on the device, fed the same fresh random frame and identity
kernels as the local PyTorch reference, and its outputs are compared with it.
"""

from __future__ import annotations

import socket
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MfsError

PARITY_TOLERANCE = 1e-4  # max abs difference vs PyTorch, faces and masks (fp32 in [0, 1])


class RpcAddressError(MfsError, ValueError):
    """A malformed --rpc value."""


@dataclass(frozen=True)
class RpcAddress:
    """Where the device is: an RPC server (no key) or a tracker and a device key."""

    host: str
    port: int
    key: str | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}" + (f":{self.key}" if self.key else "")


def parse_rpc_address(spec: str, need_key: bool = False) -> RpcAddress:
    """``HOST:PORT`` (a server) or ``HOST:PORT:KEY`` (a tracker) -> RpcAddress, with a clear error."""
    parts = spec.split(":")
    ok = len(parts) in ((3,) if need_key else (2, 3)) and all(parts) and parts[1].isdigit() \
        and 0 < int(parts[1]) < 65536
    if not ok:
        form = "TRACKER_HOST:PORT:KEY" if need_key else "HOST:PORT (an RPC server) or TRACKER_HOST:PORT:KEY"
        raise RpcAddressError(f"--rpc expects {form} (e.g. 127.0.0.1:9190:aarch64-qemu), got {spec!r}")
    return RpcAddress(parts[0], int(parts[1]), parts[2] if len(parts) == 3 else None)


def connect(address: RpcAddress, session_timeout: float = 900):
    """An RPC session on the device, or an MfsError that says who could not be reached."""
    from tvm import rpc

    what = f"TVM RPC tracker {address.host}:{address.port} (key {address.key})" if address.key \
        else f"TVM RPC server {address.host}:{address.port}"
    try:  # a plain socket first: TVM's tracker client retries a dead address for a minute
        socket.create_connection((address.host, address.port), timeout=10).close()
        if address.key:
            tracker = rpc.connect_tracker(address.host, address.port)
            keys = sorted(tracker.summary().get("queue_info", {}))
            if address.key not in keys:  # request() would wait for such a device forever
                raise MfsError(f"no device registered under key {address.key!r} with the TVM RPC tracker "
                               f"{address.host}:{address.port} (keys there: {', '.join(keys) or 'none'})")
            return tracker.request(address.key, priority=1, session_timeout=session_timeout)
        return rpc.connect(address.host, address.port, session_timeout=session_timeout)
    except (OSError, RuntimeError, ValueError) as error:
        raise MfsError(f"cannot reach {what}: {error}. Is the server running (scripts/arm-rpc-server.sh start "
                       "for the emulated aarch64 one)?") from error


@dataclass
class RemoteReport:
    """What a remote run measured: parity with PyTorch and latency on the device."""

    address: str
    device: str
    faces_max_abs: float
    masks_max_abs: float
    times_ms: list[float]
    upload_s: float

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms) if self.times_ms else float("nan")

    @property
    def parity_ok(self) -> bool:
        return max(self.faces_max_abs, self.masks_max_abs) <= PARITY_TOLERANCE


def reference_case(models, shape: tuple[int, ...], seed: int | None = None):
    """A fresh random frame batch and identity, and PyTorch's outputs for them."""
    import torch

    rng = np.random.default_rng(seed)
    image = rng.random(shape, dtype=np.float32)
    torch.manual_seed(int(rng.integers(1 << 31)))
    with torch.no_grad():
        weights = models.identity_weights(torch.rand(1, 3, 112, 112))
        faces, masks = models.idn(torch.from_numpy(image), weights)
    from .models import idn_layer_shapes

    tensors = dict(weights.tensors())  # in the graph's input order, as TVMBackend feeds them
    kernels = [np.ascontiguousarray(tensors[name].detach().cpu().numpy().reshape(kernel_shape))
               for name, kernel_shape in idn_layer_shapes().items()]
    return image, kernels, faces.numpy(), masks.numpy()


def run_remote(library: Path, models, address: RpcAddress, shape: tuple[int, ...], repeat: int = 0,
               gpu: bool = False, seed: int | None = None) -> RemoteReport:
    """Upload ``library``, run it once on the device for parity, then time ``repeat`` runs."""
    import time

    import tvm
    from tvm import relax

    session = connect(address)
    image, kernels, ref_faces, ref_masks = reference_case(models, shape, seed)
    start = time.perf_counter()
    session.upload(str(library))
    module = session.load_module(library.name)
    upload_s = time.perf_counter() - start
    device = session.cl(0) if gpu else session.cpu(0)
    if gpu and not device.exist:
        raise MfsError(f"the device at {address} has no OpenCL device (its TVM runtime needs USE_OPENCL=ON)")
    vm = relax.VirtualMachine(module, device)
    inputs = [tvm.runtime.tensor(array, device) for array in (image, *kernels)]
    vm.set_input("main", *inputs)
    vm.invoke_stateful("main")  # a tuple result cannot cross RPC as a value; fetch it as outputs
    faces, masks = (t.numpy() for t in vm.get_outputs("main"))
    times: list[float] = []
    if repeat > 0:
        timer = vm.time_evaluator("invoke_stateful", device, number=1, repeat=repeat)
        times = [1e3 * float(t) for t in timer("main").results]
    return RemoteReport(str(address), str(device), float(np.abs(faces - ref_faces).max()),
                        float(np.abs(masks - ref_masks).max()), times, upload_s)
