"""Mixed precision in training: bf16 autocast on CPUs with native bf16 (fp16 on CUDA), the IDN's
strided depthwise convs kept in float32 under it, and the bf16 IDN close to the float32 one."""

from __future__ import annotations

import torch

from mfs_fast.models import IDN, IIN
from mfs_fast.models.idn import strided_depthwise
from mfs_fast.train.precision import autocast_dtype, cpu_has_native_bf16


def test_autocast_dtype_per_device():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, enabled=False) is None
    assert autocast_dtype(cpu, enabled=True) == (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert autocast_dtype(torch.device("cuda"), enabled=True) == torch.float16
    assert autocast_dtype(torch.device("cuda"), enabled=False) is None


def test_strided_depthwise_stays_float32_under_cpu_autocast():
    """oneDNN's bf16 kernel for the 4x4 stride-2 depthwise conv is 4-6x slower than float32:
    under autocast it runs in float32, with float32's result; other convs still go bf16."""
    x, kernel = torch.rand(2, 32, 56, 56), torch.randn(32, 1, 4, 4)
    expected = torch.nn.functional.conv2d(x, kernel, stride=2, padding=1, groups=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = strided_depthwise(x, kernel)
        other = torch.nn.functional.conv2d(x, torch.randn(8, 32, 1, 1))
    assert got.dtype == torch.float32 and torch.equal(got, expected)
    assert other.dtype == torch.bfloat16


def test_bf16_idn_is_close_to_float32():
    """A forward of a fresh random IIN + IDN under bf16 autocast vs float32 on random crops:
    close enough to train with (bf16 keeps 8 bits of mantissa), far from a broken cast."""
    torch.manual_seed(int(torch.randint(1 << 30, ())))
    iin, idn = IIN().eval(), IDN().eval()
    embedding = torch.nn.functional.normalize(torch.randn(1, 512), dim=1)
    image = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        weights = iin(embedding, torch.randn(1, 512, 7, 7))
        expected, expected_mask = idn(image, weights)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, mask = idn(image, weights)
    error = (got.float() - expected).abs()
    # measured: mean 6e-4 to 9e-4, max 2e-3 to 4e-3 (the result differs from its input by ~0.13)
    assert float(error.mean()) < 0.003 and float(error.max()) < 0.02, (float(error.mean()), float(error.max()))
    assert float((mask.float() - expected_mask).abs().max()) < 0.01
