"""Per-block latency: the fused C++ kernels vs the same ops in PyTorch (channels_last), at 224.

Run: ./run.sh bench -k fused_blocks   (results: bench/RESULTS.md)
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mfs_fast import native

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="C++ extension not built")

# (name, input channels, input side, output channels, skip channels) of the IDN at 224
ENCODER = [("enc0", 3, 224, 32), ("enc1", 32, 112, 64), ("enc2", 64, 56, 128), ("enc3", 128, 28, 256),
           ("enc4", 256, 14, 512)]
DECODER = [("dec0", 512, 7, 256, 256), ("dec1", 512, 14, 128, 128), ("dec2", 256, 28, 64, 64),
           ("dec3", 128, 56, 32, 0)]


def _arrays(rng, *shapes):
    return [np.ascontiguousarray(rng.standard_normal(s, dtype=np.float32) * 0.1) for s in shapes]


@pytest.mark.parametrize("impl", ["fused", "torch"])
@pytest.mark.parametrize("block", ENCODER, ids=lambda b: b[0])
def test_encoder_block(benchmark, threads, impl, block):
    name, c, side, m = block
    rng = np.random.default_rng(0)
    x, dw, pw = _arrays(rng, (1, c, side, side), (c, 1, 4, 4), (m, c))
    benchmark.group = f"encoder block {name} ({c}->{m} @ {side}), {threads} thread(s)"
    if impl == "fused":
        core = native.require_native()
        benchmark(core.encoder_block, x, dw, pw, threads=threads)
        return
    xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    dwt, pwt = torch.from_numpy(dw), torch.from_numpy(pw)[:, :, None, None]

    def reference():
        with torch.no_grad():
            return F.leaky_relu(F.conv2d(F.conv2d(xt, dwt, stride=2, padding=1, groups=c), pwt), 0.1)

    benchmark(reference)


@pytest.mark.parametrize("impl", ["fused", "torch"])
@pytest.mark.parametrize("block", DECODER, ids=lambda b: b[0])
def test_decoder_block(benchmark, threads, impl, block):
    name, c, side, m, skip_c = block
    rng = np.random.default_rng(0)
    x, dw, pw = _arrays(rng, (1, c, side, side), (c, 1, 3, 3), (m, c))
    skip = _arrays(rng, (1, skip_c, 2 * side, 2 * side))[0] if skip_c else None
    benchmark.group = f"decoder block {name} (up + {c}->{m} @ {2 * side}{' + concat' if skip_c else ''}), {threads} thread(s)"
    if impl == "fused":
        core = native.require_native()
        benchmark(core.upsample_block, x, dw, pw, skip=skip, threads=threads)
        return
    xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    dwt, pwt = torch.from_numpy(dw), torch.from_numpy(pw)[:, :, None, None]
    skipt = None if skip is None else torch.from_numpy(skip)

    def reference():
        with torch.no_grad():
            y = F.interpolate(xt, scale_factor=2, mode="bilinear", align_corners=True)
            y = F.leaky_relu(F.conv2d(F.conv2d(y, dwt, padding=1, groups=c), pwt), 0.1)
            return y if skipt is None else torch.cat((y, skipt), 1)

    benchmark(reference)
