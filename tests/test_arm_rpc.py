"""The qemu-backed aarch64 RPC round trip: cross-compile, upload, run, check parity, time.

The device is scripts/arm-rpc-server.sh: the aarch64 TVM runtime in an aarch64 Python under
qemu user-mode emulation, behind a tracker on 127.0.0.1. `make arm-rpc-check` builds its root
(~110 MB of wheels, cached in ~/.cache/mfs_fast; about 3.5 min from scratch here) and runs
this; the normal suite runs it only where that root already exists. Latencies under emulation
are not phone speeds.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mfs_fast.backends import available_backends

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "arm-rpc-server.sh"
ARM_ROOT = Path(os.environ.get("MFS_ARM_ROOT", Path.home() / ".cache" / "mfs_fast" / "arm-root"))
TRACKER = f"127.0.0.1:{os.environ.get('MFS_RPC_TRACKER_PORT', '9190')}:{os.environ.get('MFS_RPC_KEY', 'aarch64-qemu')}"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif("tvm" not in available_backends(), reason="apache-tvm not installed"),
    pytest.mark.skipif(shutil.which("qemu-aarch64-static") is None or shutil.which("aarch64-linux-gnu-g++") is None,
                       reason="needs qemu-aarch64-static and aarch64-linux-gnu-g++ (./run.sh installs them)"),
    pytest.mark.skipif(not (ARM_ROOT / ".mfs-stamp").is_file(),
                       reason=f"no emulated aarch64 root in {ARM_ROOT}: run `make arm-rpc-check` "
                              "(or scripts/arm-rpc-server.sh setup) to build it"),
]


@pytest.fixture(scope="module")
def arm_server():
    """The emulated device; started for this module unless it already runs (then left running)."""
    was_running = "server: running" in subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True,
                                                      text=True).stdout
    started = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=600)
    assert started.returncode == 0, started.stderr[-3000:]
    yield TRACKER
    if not was_running:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=60)


def test_cross_compile_upload_run_parity_and_timing(arm_server, tmp_path, capsys):
    from mfs_fast.cli import main
    from mfs_fast.models import FaceSwapModels
    from mfs_fast.rpc import PARITY_TOLERANCE, parse_rpc_address, run_remote

    library = tmp_path / "idn_aarch64.so"
    assert main(["compile", "--target", "aarch64-linux", "-o", str(library)]) == 0
    assert library.read_bytes()[18:20] == (183).to_bytes(2, "little")  # EM_AARCH64
    report = run_remote(library, FaceSwapModels.random(), parse_rpc_address(arm_server), (1, 3, 224, 224),
                        repeat=2)
    assert "cpu" in report.device
    assert report.faces_max_abs <= PARITY_TOLERANCE and report.masks_max_abs <= PARITY_TOLERANCE
    assert len(report.times_ms) == 2 and all(t > 0 for t in report.times_ms)

    capsys.readouterr()
    assert main(["rpc", "bench", "--target", "aarch64-linux", "--rpc", arm_server, "--lib", str(library),
                 "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "parity vs PyTorch" in out and ": ok" in out and "median latency" in out
