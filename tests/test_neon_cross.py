"""The NEON kernels, cross-compiled for AArch64 and checked under qemu user-mode emulation.

kernels/cross_check.sh builds kernels/neon_check.cpp with the kernel sources (no Python) and
compares every block and the whole IDN on the NEON path with the portable path in the same
binary (tolerance 1e-4). ./run.sh installs the cross compiler and qemu.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "kernels" / "cross_check.sh"


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None or shutil.which("qemu-aarch64-static") is None,
                    reason="needs aarch64-linux-gnu-g++ and qemu-aarch64-static (apt-get install "
                           "g++-aarch64-linux-gnu qemu-user-static; ./run.sh does it)")
def test_neon_kernels_match_portable_ones_under_qemu(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=900,
                            env={"PATH": "/usr/bin:/bin:/usr/local/bin", "OUT": str(tmp_path / "neon_check")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "checking 'neon' against 'scalar'" in result.stdout
    assert "whole IDN" in result.stdout and "all cases within tolerance" in result.stdout


def test_native_isa_matches_portable_one(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), "--native"], capture_output=True, text=True, timeout=900,
                            env={"PATH": "/usr/bin:/bin:/usr/local/bin", "OUT": str(tmp_path / "native_check")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "all cases within tolerance" in result.stdout
