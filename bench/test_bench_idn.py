"""IDN latency per backend (pytest-benchmark). Run: ./run.sh bench  (results: bench/RESULTS.md)."""

import numpy as np
import pytest
import torch

from mfs_fast import native
from mfs_fast.backends import available_backends, create_backend
from mfs_fast.models import modulate_demodulate


@pytest.mark.parametrize("size,batch", [(224, 1), (224, 8), (256, 1)])
@pytest.mark.parametrize("name", available_backends())
def test_idn_forward(benchmark, idn_case, threads, name, size, batch):
    models, weights, _ = idn_case
    backend = create_backend(name, models, threads=threads)
    backend.set_identity(weights)
    images = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    benchmark.group = f"IDN {size} batch {batch}, {threads} thread(s)"
    benchmark(backend.run, images)


@pytest.mark.parametrize("name", available_backends())
def test_identity_switch(benchmark, idn_case, name):
    """Installing a new identity in a built backend (no recompilation)."""
    models, weights, _ = idn_case
    backend = create_backend(name, models)
    benchmark.group = "identity switch (set_identity)"
    benchmark(backend.set_identity, weights)


def test_identity_update_torch(benchmark, idn_case):
    """Recomputing every modulated pointwise kernel for a new identity (the per-source cost)."""
    models, _, _ = idn_case
    modulators = list(models.iin.encoder_modulation) + list(models.iin.decoder_modulation)
    styles = [torch.randn(m.weight.shape[1]) for m in modulators]
    benchmark.group = "identity update (9 pointwise layers)"
    benchmark(lambda: [modulate_demodulate(m.weight, s) for m, s in zip(modulators, styles)])


@pytest.mark.skipif(not native.AVAILABLE, reason="C++ extension not built")
def test_identity_update_native(benchmark, idn_case):
    models, _, _ = idn_case
    core = native.require_native()
    modulators = list(models.iin.encoder_modulation) + list(models.iin.decoder_modulation)
    bases = [m.weight.detach()[:, :, 0, 0].contiguous().numpy() for m in modulators]
    styles = [torch.randn(b.shape[1]).numpy() for b in bases]
    outs = [(b.copy(), s.copy(), b[:, 0].copy()) for b, s in zip(bases, styles)]
    benchmark.group = "identity update (9 pointwise layers)"
    benchmark(lambda: [core.modulate_demodulate_into(b, s, *o) for b, s, o in zip(bases, styles, outs)])


@pytest.mark.skipif(not native.AVAILABLE, reason="C++ extension not built")
@pytest.mark.parametrize("form", ["factored", "modulated"])
@pytest.mark.parametrize("step", ["run", "set_identity"])
def test_fused_pointwise_forms(benchmark, idn_case, threads, form, step):
    """The fused IDN's two pointwise forms: W packed once + s, d per identity (factored) vs a
    W~ packed per identity (modulated): per-frame latency and identity-switch cost."""
    from mfs_fast.backends.fused import FusedIDN

    models, weights, _ = idn_case
    fused = FusedIDN(models, threads=threads, pointwise=form)
    fused.set_identity(weights)
    images = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    fused.run(images)
    benchmark.group = f"fused pointwise forms: {step}, {threads} thread(s)"
    if step == "run":
        benchmark(fused.run, images)
    else:
        benchmark(fused.set_identity, weights)
