"""The CUDA kernels (mfs_fast._cuda, kernels/cuda/, mfs_fast.backends.fused_cuda) against the PyTorch reference.

* Build and no-GPU behaviour: where nvcc is on PATH the module must have been built and must
  import (CI has nvcc; skipped only without nvcc); without a GPU it reports 0 devices and why,
  never raising, and CudaFusedIDN raises CudaUnavailableError saying which part is missing.
* Parity, on two builds of the same sources: ``gpu`` is mfs_fast._cuda on a real GPU (skipped
  with "no CUDA GPU" where there is none); ``emulated`` is kernels/cuda compiled by g++ against
  cuda_emu.hpp (every GPU thread a fiber, barriers switching between them, memory poisoned with
  NaN, launches and copies checked), so the kernels' indexing, tiling, shared-memory phases and
  the engine's buffer wiring are checked here too. Every block (every tile configuration) and
  the whole IDN against PyTorch, max abs error <= 1e-4 (fp32), at 224 and 256, batch 1 and 3,
  identity switch A -> B -> A, on the scaled random models of test_fused_kernels (O(1)
  activations, an open and varied mask). The emulator is slow: it runs the large block cases
  with the automatic tile choice only.
* The emulator itself: a planted missing barrier, divergent barriers, bad launches and host
  pointers in device copies must be caught (kernels/cuda/emu_selftest.cpp).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT

from mfs_fast.backends import fused_cuda as cuda_fused
from mfs_fast.backends.fused_cuda import CudaFusedIDN, CudaUnavailableError
from test_fused_kernels import (  # noqa: F401  (idn_setup: the CPU tests' module fixture, reused as is)
    ENCODER_CASES,
    UPSAMPLE_CASES,
    assert_close,
    check_identity_switch_a_b_a,
    conditioned_models,
    idn_setup,
    pointwise_args,
    random_heads,
    randn,
    scaled_identity,
    t,
    up2,
)

CUDA_DIR = ROOT / "kernels" / "cuda"
NVCC = shutil.which("nvcc")
CONFIGS = ("auto", "big", "mid", "thin")
NO_GPU = "no CUDA GPU"


def _gpu_skip_reason() -> str | None:
    if not cuda_fused.BUILT:
        return f"{NO_GPU} (and mfs_fast._cuda is not built: {cuda_fused.IMPORT_ERROR})"
    reason = cuda_fused._module.unavailable_reason()
    if not reason:
        return None
    return reason if reason.startswith(NO_GPU) else f"{NO_GPU} ({reason})"


def _emulator():
    spec = importlib.util.spec_from_file_location("mfs_cuda_emulate", CUDA_DIR / "emulate.py")
    emulate = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ under kernels/ (run.sh hashes it)
    try:
        spec.loader.exec_module(emulate)
    finally:
        sys.dont_write_bytecode = saved
    return emulate


@pytest.fixture(scope="session")
def emulated_module():
    emulate = _emulator()
    if emulate.compiler() is None:
        pytest.skip("no C++ compiler to build the CUDA emulator")
    return emulate.load(emulate.build())


@pytest.fixture(params=["gpu", "emulated"])
def impl(request):
    """The CUDA module to test: the real one on a GPU, or the CPU-emulated build of its sources."""
    if request.param == "gpu":
        reason = _gpu_skip_reason()
        if reason:
            pytest.skip(reason)
        return cuda_fused._module
    return request.getfixturevalue("emulated_module")


def heavy(impl) -> bool:
    return bool(impl.emulated)


@pytest.fixture
def rng(seed, request):
    return np.random.default_rng((seed, zlib.crc32(request.node.nodeid.encode())))


# ------------------------------------------------------------------------------------ build, no GPU
@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH: the CUDA kernels are not built here")
def test_module_is_built_where_nvcc_is():
    """CI has nvcc: the install must have built mfs_fast._cuda next to mfs_fast._native, importable without a GPU."""
    assert cuda_fused.BUILT, cuda_fused.IMPORT_ERROR
    module = cuda_fused._module
    assert module.emulated is False
    assert module.runtime_version() >= 12000


@pytest.mark.skipif(not cuda_fused.BUILT, reason="mfs_fast._cuda is not built (no nvcc at install time)")
def test_no_gpu_is_reported_not_raised(idn_setup):
    module = cuda_fused._module
    if module.device_count() > 0:
        pytest.skip("a CUDA GPU is present: the no-GPU path cannot be checked here")
    assert module.device_count() == 0
    reason = module.unavailable_reason()
    assert reason.startswith("no CUDA GPU") and module.device_name() == reason
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        module.encoder_block(np.zeros((1, 3, 8, 8), np.float32), np.zeros((3, 1, 4, 4), np.float32),
                             np.zeros((4, 3), np.float32))
    models = idn_setup[0]
    with pytest.raises(CudaUnavailableError, match="mfs_fast._cuda is built, but cannot run here: no CUDA GPU"):
        CudaFusedIDN(models)
    assert cuda_fused.unavailable_reason().endswith(reason)


def test_without_the_module_the_error_says_not_built():
    code = (
        "import sys; sys.modules['mfs_fast._cuda'] = None\n"
        "from mfs_fast.backends import fused_cuda as cuda_fused\n"
        "assert not cuda_fused.BUILT\n"
        "try:\n"
        "    cuda_fused.CudaFusedIDN(None)  # models are never touched\n"
        "except cuda_fused.CudaUnavailableError as e:\n"
        "    print('raised:', e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("raised: mfs_fast._cuda (the CUDA kernels) is not built") and "nvcc" in proc.stdout


def test_emulator_catches_what_it_claims(tmp_path):
    cxx = _emulator().compiler()
    if cxx is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path / "emu_selftest"
    subprocess.run([cxx, "-std=c++17", "-O1", "-DMFS_CUDA_EMULATE", "-I", str(CUDA_DIR),
                    str(CUDA_DIR / "emu_selftest.cpp"), "-o", str(exe)], check=True, timeout=300)
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all emulator checks passed" in proc.stdout


# ------------------------------------------------------------------------------------ blocks
def _small(macs: float) -> bool:
    return macs <= 3e7


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("form", ("factored", "modulated"))
@pytest.mark.parametrize("case", ENCODER_CASES, ids=lambda c: "C{}_{}x{}_M{}".format(*c[:4]))
def test_encoder_block(impl, config, form, case, rng):
    c, h, w, m, normalize = case
    if heavy(impl) and config != "auto" and not _small(c * m * h * w / 4):
        pytest.skip("emulator: large cases run with the automatic tile choice only")
    x = rng.random((2, c, h, w), dtype=np.float32)
    dw = randn(rng, c, 1, 4, 4, scale=0.35)
    (pw, scale, demod), fused = pointwise_args(rng, form, c, m)
    ours = impl.encoder_block(x, dw, pw, scale=scale, demod=demod, normalize=normalize, config=config)
    xr = (t(x) - 0.5) / 0.5 if normalize else t(x)
    ref = F.leaky_relu(F.conv2d(F.conv2d(xr, t(dw), stride=2, padding=1, groups=c), t(fused)[:, :, None, None]), 0.1)
    assert_close(ours, ref.numpy(), f"encoder {case} {config}")


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("form", ("factored", "modulated"))
@pytest.mark.parametrize("case", UPSAMPLE_CASES, ids=lambda c: "C{}_{}x{}_M{}_skip{}_bias{}".format(*c))
def test_upsample_block(impl, config, form, case, rng):
    c, h, w, m, skip_c, biases = case
    if heavy(impl) and config != "auto" and not _small(c * m * 4 * h * w):
        pytest.skip("emulator: large cases run with the automatic tile choice only")
    x = randn(rng, 2, c, h, w, scale=0.5)
    dw = randn(rng, c, 1, 3, 3, scale=0.45)
    (pw, scale, demod), fused = pointwise_args(rng, form, c, m)
    dwb = randn(rng, c, scale=0.1) if biases else None
    pwb = randn(rng, m, scale=0.1) if biases else None
    skip = randn(rng, 2, skip_c, 2 * h, 2 * w) if skip_c else None
    ours = impl.upsample_block(x, dw, pw, depthwise_bias=dwb, pointwise_bias=pwb, scale=scale, demod=demod, skip=skip,
                               config=config)
    y = F.conv2d(up2(t(x)), t(dw), None if dwb is None else t(dwb), padding=1, groups=c)
    y = F.leaky_relu(F.conv2d(y, t(fused)[:, :, None, None], None if pwb is None else t(pwb)), 0.1)
    if skip is not None:
        y = torch.cat((y, t(skip)), dim=1)
    assert_close(ours, y.numpy(), f"upsample block {case} {config}")


@pytest.mark.parametrize("c,h,w,m", [(128, 56, 56, 32), (128, 64, 64, 32), (12, 3, 5, 7)])
def test_last_decoder_block_chained_to_final_conv(impl, c, h, w, m, rng):
    """Decoder stage 3 feeds final's 1x1 conv (+BN) in shared memory: only its 8 channels are stored."""
    if heavy(impl) and h > 56:
        pytest.skip("emulator: one large case is enough")
    x = randn(rng, 1, c, h, w, scale=0.5)
    dw = randn(rng, c, 1, 3, 3, scale=0.45)
    (pw, scale, demod), fused = pointwise_args(rng, "factored", c, m)
    w2, b2 = randn(rng, 8, m, scale=0.3), randn(rng, 8, scale=0.1)
    ours = impl.upsample_block(x, dw, pw, scale=scale, demod=demod, second_pointwise=w2, second_bias=b2)
    y = F.leaky_relu(F.conv2d(F.conv2d(up2(t(x)), t(dw), padding=1, groups=c), t(fused)[:, :, None, None]), 0.1)
    y = F.conv2d(y, t(w2)[:, :, None, None], t(b2))
    assert_close(ours, y.numpy(), "decoder stage + final.0")


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("m,k,shape", [(1, 3, (5, 7)), (2, 8, (224, 224)), (3, 37, (13, 11)), (5, 300, (9, 31)),
                                       (33, 512, (14, 14)), (8, 32, (112, 112)), (70, 40, (17, 9))])
def test_pointwise_gemm(impl, config, m, k, shape, rng):
    if heavy(impl) and config != "auto" and not _small(m * k * shape[0] * shape[1]):
        pytest.skip("emulator: large cases run with the automatic tile choice only")
    x = randn(rng, 2, k, *shape)
    w = randn(rng, m, k, scale=k ** -0.5)
    scale, bias = randn(rng, m), randn(rng, m)
    for leaky in (False, True):
        ours = impl.pointwise(x, w, scale=scale, bias=bias, leaky=leaky, config=config)
        ref = t(scale)[:, None, None] * F.conv2d(t(x), t(w)[:, :, None, None]) + t(bias)[:, None, None]
        assert_close(ours, (F.leaky_relu(ref, 0.1) if leaky else ref).numpy(), f"pointwise {m}x{k} leaky={leaky}")


@pytest.mark.parametrize("h,w", [(112, 112), (128, 128), (8, 24)])
def test_output_head_and_blend(impl, h, w, rng):
    x = randn(rng, 2, 32, h, w)
    m5 = randn(rng, 2, 2, 2 * h, 2 * w)
    image = rng.random((2, 3, 2 * h, 2 * w), dtype=np.float32)
    hw = random_heads(rng)
    faces, masks = impl.output_head(x, m5, image, hw)
    g = {k: t(v) for k, v in hw.items()}
    y = F.leaky_relu(F.conv2d(up2(t(x)), g["final.0.weight"][:, :, None, None], g["final.0.bias"]), 0.1)
    y = F.leaky_relu(F.conv2d(y, g["final.1.weight"], g["final.1.bias"], padding=1), 0.1)
    face = (1 + torch.tanh(F.conv2d(y, g["final.2.weight"], g["final.2.bias"], padding=1))) / 2
    mask = torch.sigmoid(F.conv2d(t(m5), g["mask.out.weight"], g["mask.out.bias"], padding=1))
    assert_close(masks, mask.numpy(), "mask")
    assert_close(faces, (face * mask + (1 - mask) * t(image)).numpy(), "blended face")


def test_mask_head_blocks(impl, idn_setup, rng):
    """The five fusion-mask blocks exactly as the IDN folds them (mfs_fast.backends.fused.head_weights), chained."""
    from mfs_fast.backends.fused import head_weights

    models = idn_setup[0]
    heads = head_weights(models)
    x = randn(rng, 2, 512, 7, 7, scale=0.7)
    ours, ref = x, t(x)
    for i in range(5):
        ours = impl.upsample_block(ours, heads[f"mask.{i}.depthwise"], heads[f"mask.{i}.pointwise"],
                                   depthwise_bias=heads[f"mask.{i}.depthwise_bias"],
                                   pointwise_bias=heads[f"mask.{i}.pointwise_bias"])
        with torch.no_grad():
            ref = models.idn.mask[i](ref)
        assert_close(ours, ref.numpy(), f"mask block {i}")


def test_block_functions_reject_bad_input(impl, rng):
    x = rng.random((1, 8, 16, 16), dtype=np.float32)
    dw4, pw = randn(rng, 8, 1, 4, 4), randn(rng, 4, 8)
    with pytest.raises(ValueError, match="x must be float32"):
        impl.encoder_block(x.astype(np.float64), dw4, pw)
    with pytest.raises(ValueError, match="must be even"):
        impl.encoder_block(x[:, :, :15].copy(), dw4, pw)
    with pytest.raises(ValueError, match=r"depthwise must have shape \(8, 1, 4, 4\) or \(8, 4, 4\)"):
        impl.encoder_block(x, randn(rng, 8, 1, 3, 3), pw)
    with pytest.raises(ValueError, match="unknown tile config 'huge'"):
        impl.pointwise(x, pw, config="huge")
    with pytest.raises(ValueError, match="second_pointwise needs a block of at most 32 output channels"):
        impl.upsample_block(x, randn(rng, 8, 1, 3, 3), randn(rng, 40, 8), second_pointwise=randn(rng, 8, 40))
    with pytest.raises(ValueError, match=r"skip must have shape \(1, 2, 32, 32\)"):
        impl.upsample_block(x, randn(rng, 8, 1, 3, 3), pw, skip=np.zeros((1, 2, 16, 16), np.float32))


# ------------------------------------------------------------------------------------ whole IDN
@pytest.fixture(scope="module")
def engines():
    """One CudaFusedIDN per implementation and graph mode for the module's tests (engines are reused)."""
    return {}


def cuda_idn(engines, impl, models, graphs=True) -> CudaFusedIDN:
    key = (id(impl), id(models), graphs)
    if key not in engines:
        engines[key] = CudaFusedIDN(models, graphs=graphs, module=impl)
    return engines[key]


@pytest.mark.parametrize("size,batch", [(224, 1), (224, 3), (256, 1), (256, 3)])
def test_whole_idn_matches_torch(impl, size, batch, idn_setup, engines):
    models, identities, references = idn_setup
    images, result, mask = references[size, batch]
    idn = cuda_idn(engines, impl, models)
    idn.set_identity(identities[0])
    idn.engine(size, size).poison()  # every output and intermediate must be written again
    faces, masks = idn.run(images)
    assert faces.dtype == masks.dtype == np.float32
    assert_close(faces, result, f"faces {size} x{batch}")
    assert_close(masks, mask, f"masks {size} x{batch}")
    times = idn.engine(size, size).last_run_ms()
    assert set(times) == {"h2d", "kernels", "d2h", "total"} and times["total"] >= times["kernels"] > 0


def test_whole_idn_on_big_tiles(emulated_module, idn_setup, monkeypatch):
    """With few SMs the automatic choice takes the big tiles for most stages (at batch 1 on a large
    GPU it takes mid ones): the emulator reports 2 SMs here, so the whole IDN runs on them too."""
    models, identities, references = idn_setup
    images, result, mask = references[224, 3]
    monkeypatch.setenv("MFS_CUDA_EMU_SMS", "2")
    idn = CudaFusedIDN(models, module=emulated_module)
    idn.set_identity(identities[0])
    faces, masks = idn.run(images)
    configs = idn.engine(224, 224).stage_configs(3)
    assert sum(c == "big" for c in configs.values()) >= 8, configs
    assert_close(faces, result, "faces on big tiles")
    assert_close(masks, mask, "masks on big tiles")


def test_graphs_and_plain_launches_agree(impl, idn_setup, engines):
    models, identities, references = idn_setup
    images = references[224, 1][0]
    outputs = []
    for graphs in (True, False):
        idn = cuda_idn(engines, impl, models, graphs=graphs)
        idn.set_identity(identities[0])
        outputs.append(idn.run(images))
        assert idn.engine(224, 224).graphs == graphs, idn.engine(224, 224).graph_error
    assert np.array_equal(outputs[0][0], outputs[1][0]) and np.array_equal(outputs[0][1], outputs[1][1])


def test_identity_switch_a_b_a(impl, idn_setup, engines):
    check_identity_switch_a_b_a(cuda_idn(engines, impl, idn_setup[0]), idn_setup)


def test_identity_from_another_iin_re_uploads_its_base(impl, idn_setup, engines, seed):
    models, identities, references = idn_setup
    other = conditioned_models(seed % 2**31 + 3)
    identity = scaled_identity(other, torch.Generator().manual_seed(seed % 2**31 + 4))
    images = references[224, 1][0]
    with torch.no_grad():
        result, _ = models.idn(torch.from_numpy(images), identity)
    idn = CudaFusedIDN(models, module=impl)  # its own: set_base changes the engine's W
    idn.set_identity(identity)
    assert_close(idn.run(images)[0], result.numpy(), "faces with foreign base kernels")
    idn.set_identity(identities[0])
    assert_close(idn.run(images)[0], references[224, 1][1], "faces after switching back")


def test_small_and_odd_sizes_and_the_timing_api(impl, idn_setup, rng):
    """64 and 96 (deepest planes 2x2 and 3x3: partial tiles everywhere) and a batch of 2, with the
    engine's timing helpers (kernel-only events, per-stage events, tile choices)."""
    models, identities, _ = idn_setup
    idn = CudaFusedIDN(models, module=impl)
    idn.set_identity(identities[1])
    for size, batch in ((64, 1), (96, 2)):
        images = rng.random((batch, 3, size, size), dtype=np.float32)
        with torch.no_grad():
            result, mask = models.idn(torch.from_numpy(images), identities[1])
        faces, masks = idn.run(images)
        assert_close(faces, result.numpy(), f"faces {size} x{batch}")
        assert_close(masks, mask.numpy(), f"masks {size} x{batch}")
    engine = idn.engine(96, 96)
    kernel_ms = engine.time_kernels(2, warmup=1, repeats=2)
    assert len(kernel_ms) == 2 and all(v > 0 for v in kernel_ms)
    stages = engine.stage_ms(1, repeats=1)
    assert list(stages) == [*(f"encoder.{i}" for i in range(5)), *(f"decoder.{i}" for i in range(4)),
                            *(f"mask.{i}" for i in range(5)), "head"]
    configs = engine.stage_configs(2)
    assert configs["decoder.3"] == "mid+chain" and configs["mask.4"] == "thin" and configs["head"] == "head"
    with pytest.raises(ValueError, match="run\\(\\) a batch of at least 3"):
        engine.time_kernels(3, warmup=0, repeats=1)


def test_run_rejects_bad_arguments(impl, idn_setup):
    models, identities, _ = idn_setup
    idn = CudaFusedIDN(models, module=impl)
    from mfs_fast.errors import MfsError

    with pytest.raises(MfsError, match="set_identity"):
        idn.run(np.zeros((1, 3, 64, 64), np.float32))
    idn.set_identity(identities[0])
    with pytest.raises(MfsError, match="N x 3 x S x S"):
        idn.run(np.zeros((1, 4, 64, 64), np.float32))
    with pytest.raises(ValueError, match="multiples of 32"):
        idn.run(np.zeros((1, 3, 80, 64), np.float32))
    engine = idn.engine(64, 64)
    images = np.zeros((2, 3, 64, 64), np.float32)
    faces, masks = np.zeros((2, 3, 64, 64), np.float32), np.zeros((2, 1, 64, 64), np.float32)
    with pytest.raises(ValueError, match=r"images must have shape \(N, 3, 64, 64\)"):
        engine.run(np.zeros((2, 3, 32, 32), np.float32), faces, masks)
    with pytest.raises(ValueError, match=r"faces must have shape \(2, 3, 64, 64\)"):
        engine.run(images, faces[:1], masks)
    with pytest.raises(ValueError, match="must not overlap"):
        engine.run(images, faces, faces.reshape(-1)[: masks.size].reshape(masks.shape))
    readonly = masks.copy()
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="masks must be writable"):
        engine.run(images, faces, readonly)
    dw = [np.zeros(1, np.float32)] * 9
    with pytest.raises(ValueError, match=r"depthwise\[0\] \(encoder 0\) must have shape \(3, 1, 4, 4\)"):
        engine.set_identity_factored(dw, dw, dw)


def test_backend_contract(impl, idn_setup):
    from mfs_fast.backends.base import Backend

    models, identities, references = idn_setup
    idn = CudaFusedIDN(models, module=impl)
    assert isinstance(idn, Backend) and idn.name == "fused-cuda"
    idn.set_identity(identities[0])
    images, result, _ = references[224, 1]
    faces, masks = idn.run(images.astype(np.float64))  # like every backend: converted to float32
    assert faces.shape == (1, 3, 224, 224) and masks.shape == (1, 1, 224, 224)
    assert_close(faces, result, "faces from a float64 batch")



def test_not_mistaken_for_the_cpu_engine(impl, idn_setup):
    """Code that finds a FusedIDN hands its CPU engine to the C++ pipeline core: this is not one."""
    from mfs_fast.backends.fused import FusedIDN

    idn = CudaFusedIDN(idn_setup[0], module=impl)
    assert not isinstance(idn, FusedIDN) and not hasattr(idn, "native_engine")


def test_registered_as_the_fused_cuda_backend(seed):
    """``create_backend("fused-cuda")`` / ``Swapper(backend="fused-cuda")`` reach these kernels;
    without a GPU the registry says why, with the module's own reason, and never falls back
    silently under ``strict``."""
    import torch

    from mfs_fast.backends import fused_cuda as cuda_fused
    from mfs_fast.backends import BackendUnavailable, backend_report, create_backend
    from mfs_fast.models import FaceSwapModels

    report = {name: (usable, reason) for name, usable, reason in backend_report()}
    assert "fused-cuda" in report
    usable, reason = report["fused-cuda"]
    models = FaceSwapModels.random(seed=seed % 2**31)
    if not usable:
        assert reason == cuda_fused.unavailable_reason()
        with pytest.raises(BackendUnavailable, match="fused-cuda"):
            create_backend("fused-cuda", models, strict=True)
        return
    backend = create_backend("fused-cuda", models, strict=True)
    identity = models.identity_weights(torch.rand(1, 3, 112, 112))
    backend.set_identity(identity)
    images = np.random.default_rng(seed).random((2, 3, 224, 224), dtype=np.float32)
    faces, masks = backend.run(images)
    with torch.no_grad():
        result, mask = models.idn(torch.from_numpy(images), identity)
    assert float(np.abs(faces - result.numpy()).max()) <= 1e-4
    assert float(np.abs(masks - mask.numpy()).max()) <= 1e-4
