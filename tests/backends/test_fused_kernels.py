"""The fused C++ IDN kernels (mfs_fast._native, mfs_fast.backends.fused) against the PyTorch reference.

Every block alone and the whole IDN, on fresh random inputs and identities (seeded from the
session seed), for 1-3 threads, both pointwise forms (factored W with s/d, modulated W~),
every kernel set this CPU runs (e.g. AVX2 and the forced portable path), 224 and 256 inputs,
batch 1 and 3: max abs error <= 1e-4 (fp32). Random networks collapse their activations
towards zero layer after layer, which would hide errors, so the whole-IDN tests use a random
model and identity scaled to keep every stage at O(1) and an open, varied fusion mask.
"""

from __future__ import annotations

import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mfs_fast import native
from mfs_fast.models import FaceSwapModels, IdentityWeights, PointwiseModulation, modulate_demodulate
from mfs_fast.models.layers import DECODER_IN, ENCODER_CHANNELS

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="C++ extension not built (test_modulation checks it)")

nat = native.require_native() if native.AVAILABLE else None
ISAS = nat.isas() if nat else ["scalar"]  # best first, always ends with the portable "scalar"
THREADS = (1, 2, 3)
FORMS = ("factored", "modulated")
ATOL = 1e-4


@pytest.fixture
def rng(seed, request):
    """A generator fresh for every test and run (the session seed, printed in the header, repeats it)."""
    return np.random.default_rng((seed, zlib.crc32(request.node.nodeid.encode())))


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def up2(x):
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)


def pointwise_args(rng, form, c_in, c_out):
    """(pointwise, scale, demod) for the kernel and the fused W~ for the reference."""
    base = randn(rng, c_out, c_in, scale=c_in ** -0.5)
    style = randn(rng, c_in, scale=0.5)
    fused, scale, demod = (x.numpy() for x in modulate_demodulate(t(base), t(style)))
    if form == "factored":
        return (base, scale, demod), fused
    return (fused, None, None), fused


def assert_close(ours, ref, what=""):
    assert ours.shape == ref.shape, what
    err = float(np.abs(ours - ref).max())
    assert err <= ATOL, f"{what}: max abs error {err:.3g} > {ATOL}"


# ------------------------------------------------------------------------------------------- blocks
ENCODER_CASES = [  # C, H, W, M, normalize (the five IDN stages at 224, an odd one)
    (3, 224, 224, 32, True), (32, 112, 112, 64, False), (64, 56, 56, 128, False), (128, 28, 28, 256, False),
    (256, 14, 14, 512, False), (5, 18, 26, 7, False),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", ENCODER_CASES, ids=lambda c: "C{}_{}x{}_M{}".format(*c[:4]))
def test_encoder_block(isa, threads, form, case, rng):
    c, h, w, m, normalize = case
    x = rng.random((2, c, h, w), dtype=np.float32)
    dw = randn(rng, c, 1, 4, 4, scale=0.35)
    (pw, scale, demod), fused = pointwise_args(rng, form, c, m)
    ours = nat.encoder_block(x, dw, pw, scale=scale, demod=demod, normalize=normalize, threads=threads, isa=isa)
    xr = (t(x) - 0.5) / 0.5 if normalize else t(x)
    ref = F.leaky_relu(F.conv2d(F.conv2d(xr, t(dw), stride=2, padding=1, groups=c), t(fused)[:, :, None, None]), 0.1)
    assert_close(ours, ref.numpy(), f"encoder {case}")


UPSAMPLE_CASES = [  # C, h, w, M, skip channels, biases (decoder stages at 224, mask blocks, odd sizes)
    (512, 7, 7, 256, 256, False), (512, 14, 14, 128, 128, False), (256, 28, 28, 64, 64, False),
    (128, 56, 56, 32, 0, False), (512, 7, 7, 128, 0, True), (8, 112, 112, 2, 0, True), (37, 5, 11, 5, 3, True),
    (16, 1, 3, 4, 0, True),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", UPSAMPLE_CASES, ids=lambda c: "C{}_{}x{}_M{}_skip{}_bias{}".format(*c))
def test_upsample_block(isa, threads, form, case, rng):
    c, h, w, m, skip_c, biases = case
    x = randn(rng, 2, c, h, w, scale=0.5)
    dw = randn(rng, c, 1, 3, 3, scale=0.45)
    (pw, scale, demod), fused = pointwise_args(rng, form, c, m)
    dwb = randn(rng, c, scale=0.1) if biases else None
    pwb = randn(rng, m, scale=0.1) if biases else None
    skip = randn(rng, 2, skip_c, 2 * h, 2 * w) if skip_c else None
    ours = nat.upsample_block(x, dw, pw, depthwise_bias=dwb, pointwise_bias=pwb, scale=scale, demod=demod, skip=skip,
                              threads=threads, isa=isa)
    y = F.conv2d(up2(t(x)), t(dw), None if dwb is None else t(dwb), padding=1, groups=c)
    y = F.leaky_relu(F.conv2d(y, t(fused)[:, :, None, None], None if pwb is None else t(pwb)), 0.1)
    if skip is not None:
        y = torch.cat((y, t(skip)), dim=1)
    assert_close(ours, y.numpy(), f"upsample block {case}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("m,k,shape", [(1, 3, (5, 7)), (2, 8, (224, 224)), (3, 37, (13, 11)), (5, 300, (9, 31)),
                                       (33, 512, (14, 14)), (8, 32, (112, 112))])
def test_pointwise_gemm(isa, threads, m, k, shape, rng):
    x = randn(rng, 2, k, *shape)
    w = randn(rng, m, k, scale=k ** -0.5)
    scale, bias = randn(rng, m), randn(rng, m)
    for leaky in (False, True):
        ours = nat.pointwise(x, w, scale=scale, bias=bias, leaky=leaky, threads=threads, isa=isa)
        ref = t(scale)[:, None, None] * F.conv2d(t(x), t(w)[:, :, None, None]) + t(bias)[:, None, None]
        assert_close(ours, (F.leaky_relu(ref, 0.1) if leaky else ref).numpy(), f"pointwise {m}x{k} leaky={leaky}")


def random_heads(rng) -> dict[str, np.ndarray]:
    return {
        "final.0.weight": randn(rng, 8, 32, scale=0.3), "final.0.bias": randn(rng, 8, scale=0.1),
        "final.1.weight": randn(rng, 3, 8, 3, 3, scale=0.2), "final.1.bias": randn(rng, 3, scale=0.1),
        "final.2.weight": randn(rng, 3, 3, 3, 3, scale=0.3), "final.2.bias": randn(rng, 3, scale=0.1),
        "mask.out.weight": randn(rng, 1, 2, 3, 3, scale=0.5), "mask.out.bias": randn(rng, 1, scale=0.1),
    }


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("h,w", [(112, 112), (128, 128), (13, 24)])
def test_output_head_and_blend(isa, threads, h, w, rng):
    x = randn(rng, 2, 32, h, w)
    m5 = randn(rng, 2, 2, 2 * h, 2 * w)
    image = rng.random((2, 3, 2 * h, 2 * w), dtype=np.float32)
    hw = random_heads(rng)
    faces, masks = nat.output_head(x, m5, image, hw, threads=threads, isa=isa)
    g = {k: t(v) for k, v in hw.items()}
    y = F.leaky_relu(F.conv2d(up2(t(x)), g["final.0.weight"][:, :, None, None], g["final.0.bias"]), 0.1)
    y = F.leaky_relu(F.conv2d(y, g["final.1.weight"], g["final.1.bias"], padding=1), 0.1)
    face = (1 + torch.tanh(F.conv2d(y, g["final.2.weight"], g["final.2.bias"], padding=1))) / 2
    mask = torch.sigmoid(F.conv2d(t(m5), g["mask.out.weight"], g["mask.out.bias"], padding=1))
    assert_close(masks, mask.numpy(), "mask")
    assert_close(faces, (face * mask + (1 - mask) * t(image)).numpy(), "blended face")


# ------------------------------------------------------------------------------------------- whole IDN
def conditioned_models(seed: int) -> FaceSwapModels:
    """Random models whose heads keep O(1) activations (varied BatchNorm statistics)."""
    models = FaceSwapModels.random(seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in models.idn.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1, generator=gen)
                mod.running_var.uniform_(0.05, 0.3, generator=gen)
                mod.weight.uniform_(0.5, 1.5, generator=gen)
                mod.bias.normal_(0, 0.2, generator=gen)
    return models


def scaled_identity(models: FaceSwapModels, gen: torch.Generator) -> IdentityWeights:
    """A random identity whose depthwise kernels keep every stage at O(1) (IIN outputs of a random
    model shrink them ~4x per stage); pointwise kernels modulated from the model's own base W."""
    enc = tuple(torch.randn(c, 1, 4, 4, generator=gen) * 0.35 for c in ENCODER_CHANNELS[:-1])
    dec = tuple(torch.randn(c, 1, 3, 3, generator=gen) * 0.47 for c in DECODER_IN)
    fused, mods = [], []
    for mod in (*models.iin.encoder_modulation, *models.iin.decoder_modulation):
        w = mod.weight.detach()
        f, s, d = modulate_demodulate(w, 0.5 * torch.randn(w.shape[1], generator=gen))
        fused.append(f)
        mods.append(PointwiseModulation(w.reshape(w.shape[0], -1), s, d))
    return IdentityWeights(torch.zeros(512), enc, tuple(fused[:5]), dec, tuple(fused[5:]), tuple(mods[:5]),
                           tuple(mods[5:]))


@pytest.fixture(scope="module")
def idn_setup(seed):
    """Conditioned models, two identities and reference outputs per (size, batch), computed once."""
    from mfs_fast.backends.fused import FusedIDN  # noqa: F401  (import errors show here, not in every test)

    models = conditioned_models(seed % 2**31)
    gen = torch.Generator().manual_seed(seed % 2**31 + 1)
    identities = [scaled_identity(models, gen), scaled_identity(models, gen)]
    rng = np.random.default_rng(seed + 7)
    x = torch.rand(4, 3, 224, 224, generator=gen)
    with torch.no_grad():  # mask logits of typical inputs: mean 0, std 1 (an open, varied mask)
        logits = models.idn.mask[:6](models.idn.encode(x, identities[0])[-1])
        mean, std = logits.mean(), logits.std()
        models.idn.mask[5].weight.div_(std)
        models.idn.mask[5].bias.sub_(mean).div_(std)
    references = {}
    for size in (224, 256):
        for batch in (1, 3):
            images = rng.random((batch, 3, size, size), dtype=np.float32)
            with torch.no_grad():
                result, mask = models.idn(torch.from_numpy(images), identities[0])
            references[size, batch] = images, result.numpy(), mask.numpy()
    return models, identities, references


def test_reference_outputs_are_discriminative(idn_setup):
    """Guards the guard: the reference must show the face (not just the image) and a varied mask."""
    _, _, references = idn_setup
    images, result, mask = references[224, 3]
    assert 0.05 < float(mask.mean()) < 0.95 and float(mask.std()) > 0.05
    assert float(np.abs(result - images).mean()) > 0.05


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("size,batch", [(224, 1), (224, 3), (256, 1), (256, 3)])
def test_whole_idn_matches_torch(isa, form, size, batch, idn_setup):
    from mfs_fast.backends.fused import FusedIDN

    models, identities, references = idn_setup
    images, result, mask = references[size, batch]
    outputs = []
    for threads in THREADS:
        fused = FusedIDN(models, threads=threads, pointwise=form, isa=isa)
        fused.set_identity(identities[0])
        faces, masks = fused.run(images)
        assert faces.dtype == masks.dtype == np.float32
        assert_close(faces, result, f"faces, {threads} threads")
        assert_close(masks, mask, f"masks, {threads} threads")
        outputs.append((faces, masks))
    # tiles differ with the thread count, the arithmetic per output does not
    for faces, masks in outputs[1:]:
        assert np.array_equal(faces, outputs[0][0]) and np.array_equal(masks, outputs[0][1])


def check_identity_switch_a_b_a(idn, idn_setup) -> None:
    """A -> B -> A on one backend object: B right, really different, A again bit-identical."""
    models, (a, b), references = idn_setup
    images, result_a, _ = references[224, 3]
    idn.set_identity(a)
    first = idn.run(images)
    idn.set_identity(b)
    other = idn.run(images)
    with torch.no_grad():
        result_b, _ = models.idn(torch.from_numpy(images), b)
    assert_close(other[0], result_b.numpy(), "identity B")
    assert float(np.abs(other[0] - first[0]).max()) > 0.05  # B really is another identity
    idn.set_identity(a)
    again = idn.run(images)
    assert np.array_equal(again[0], first[0]) and np.array_equal(again[1], first[1])
    assert_close(again[0], result_a, "identity A again")


@pytest.mark.parametrize("form", FORMS)
def test_identity_switch_a_b_a(form, idn_setup):
    from mfs_fast.backends.fused import FusedIDN

    check_identity_switch_a_b_a(FusedIDN(idn_setup[0], threads=2, pointwise=form), idn_setup)


def test_identity_from_the_iin(idn_setup):
    """An identity as the IIN makes it (tiny, collapsing kernels): still within tolerance."""
    from mfs_fast.backends.fused import FusedIDN

    models, _, references = idn_setup
    identity = models.identity_weights(torch.randn(1, 3, 112, 112))
    images = references[224, 1][0]
    with torch.no_grad():
        result, mask = models.idn(torch.from_numpy(images), identity)
    fused = FusedIDN(models, threads=2)
    fused.set_identity(identity)
    faces, masks = fused.run(images)
    assert_close(faces, result.numpy(), "faces")
    assert_close(masks, mask.numpy(), "masks")


def test_identity_from_another_iin_repacks_its_base(idn_setup, seed):
    """The factored form packs the models' base W once; an identity modulated from other base
    kernels must still give the right result (those layers are repacked)."""
    from mfs_fast.backends.fused import FusedIDN

    models, identities, references = idn_setup
    other = conditioned_models(seed % 2**31 + 3)
    identity = scaled_identity(other, torch.Generator().manual_seed(seed % 2**31 + 4))
    images = references[224, 1][0]
    with torch.no_grad():
        result, _ = models.idn(torch.from_numpy(images), identity)
    fused = FusedIDN(models, threads=2, pointwise="factored")
    fused.set_identity(identity)
    assert_close(fused.run(images)[0], result.numpy(), "faces with foreign base kernels")
    fused.set_identity(identities[0])  # and back to the packed bases' own identities
    assert_close(fused.run(references[224, 1][0])[0], references[224, 1][1], "faces after switching back")


def test_new_input_size_gets_the_current_identity(idn_setup):
    from mfs_fast.backends.fused import FusedIDN

    models, identities, references = idn_setup
    fused = FusedIDN(models, threads=2)
    fused.set_identity(identities[0])
    for size in (256, 224):
        images, result, mask = references[size, 1]
        faces, masks = fused.run(images)
        assert_close(faces, result, f"faces at {size}")


# ------------------------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def engine(idn_setup):
    """A native FusedIDN (224) with an identity, as the binding sees it."""
    from mfs_fast.backends.fused import FusedIDN

    models, identities, _ = idn_setup
    fused = FusedIDN(models, threads=1)
    fused.set_identity(identities[0])
    return fused._engine(224, 224)


def buffers(n=1, size=224):
    return np.zeros((n, 3, size, size), np.float32), np.zeros((n, 1, size, size), np.float32)


@pytest.mark.parametrize("images,match", [
    (np.zeros((1, 3, 224, 224), np.float64), "images must be float32"),
    (np.zeros((1, 3, 224, 448), np.float32)[..., ::2], "images must be C-contiguous"),
    (np.asfortranarray(np.zeros((1, 3, 224, 224), np.float32)), "images must be C-contiguous"),
    (np.zeros((1, 4, 224, 224), np.float32), r"images must have shape \(N, 3, 224, 224\)"),
    (np.zeros((1, 3, 256, 256), np.float32), r"built for 224x224"),
    (np.zeros((3, 224, 224), np.float32), "4 dimensions"),
    (np.zeros((0, 3, 224, 224), np.float32), "at least one image"),
    ([[0.0]], "must be a numpy float32 array"),
])
def test_run_rejects_bad_images(engine, images, match):
    faces, masks = buffers()
    with pytest.raises(ValueError, match=match):
        engine.run(images, faces, masks, 1)


def test_run_rejects_bad_outputs_and_threads(engine):
    images = np.zeros((2, 3, 224, 224), np.float32)
    faces, masks = buffers(2)
    with pytest.raises(ValueError, match=r"faces must have shape \(2, 3, 224, 224\)"):
        engine.run(images, faces[:1], masks, 1)
    with pytest.raises(ValueError, match="masks must be C-contiguous"):
        engine.run(images, faces, np.zeros((2, 1, 224, 448), np.float32)[..., ::2], 1)
    readonly = masks.copy()
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="masks must be writable"):
        engine.run(images, faces, readonly, 1)
    with pytest.raises(ValueError, match="must not overlap"):
        engine.run(images, faces, faces.reshape(-1)[: masks.size].reshape(masks.shape), 1)
    with pytest.raises(ValueError, match="threads must be in"):
        engine.run(images, faces, masks, 0)


def test_sides_must_be_multiples_of_32(idn_setup):
    from mfs_fast.backends.fused import FusedIDN, head_weights

    models, identities, _ = idn_setup
    with pytest.raises(ValueError, match="multiples of 32"):
        nat.FusedIDN(200, 224, head_weights(models))
    fused = FusedIDN(models, threads=1)
    fused.set_identity(identities[0])
    with pytest.raises(ValueError, match="multiples of 32"):
        fused.run(np.zeros((1, 3, 240, 240), np.float32))


def test_identity_arrays_are_checked(idn_setup):
    from mfs_fast.backends.fused import head_weights

    models, identities, _ = idn_setup
    engine = nat.FusedIDN(224, 224, head_weights(models))  # no bases: modulated form only
    with pytest.raises(ValueError, match="no identity set"):
        engine.run(np.zeros((1, 3, 224, 224), np.float32), *buffers(), 1)
    w = identities[0]
    dw = [x.numpy() for x in (*w.encoder_depthwise, *w.decoder_depthwise)]
    pw = [x.numpy() for x in (*w.encoder_pointwise, *w.decoder_pointwise)]
    with pytest.raises(ValueError, match="needs the base kernels"):
        engine.set_identity_factored(dw, [np.ones(1, np.float32)] * 9, [np.ones(1, np.float32)] * 9)
    with pytest.raises(ValueError, match=r"depthwise\[6\] \(decoder 1\) must have shape \(512, 1, 3, 3\)"):
        engine.set_identity_modulated(dw[:6] + [dw[6][:100]] + dw[7:], pw)
    with pytest.raises(ValueError, match=r"pointwise must hold 9 arrays"):
        engine.set_identity_modulated(dw, pw[:8])
    with pytest.raises(ValueError, match=r"pointwise\[0\] \(encoder 0\) must be float32"):
        engine.set_identity_modulated(dw, [pw[0].astype(np.float64)] + pw[1:])
    engine.set_identity_modulated(dw, pw)
    assert engine.has_identity and engine.form == "modulated"


def test_block_functions_reject_bad_input(rng):
    x = rng.random((1, 8, 16, 16), dtype=np.float32)
    dw4, pw = randn(rng, 8, 1, 4, 4), randn(rng, 4, 8)
    with pytest.raises(ValueError, match="x must be float32"):
        nat.encoder_block(x.astype(np.float64), dw4, pw)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        nat.encoder_block(x.transpose(0, 1, 3, 2), dw4, pw)
    with pytest.raises(ValueError, match="must be even"):
        nat.encoder_block(x[:, :, :15].copy(), dw4, pw)
    with pytest.raises(ValueError, match=r"depthwise must have shape \(8, 1, 4, 4\) or \(8, 4, 4\)"):
        nat.encoder_block(x, randn(rng, 8, 1, 3, 3), pw)
    with pytest.raises(ValueError, match=r"pointwise must have shape \(4, 8\)"):
        nat.upsample_block(x, randn(rng, 8, 1, 3, 3), randn(rng, 4, 9))
    with pytest.raises(ValueError, match=r"scale must have shape \(8,\)"):
        nat.upsample_block(x, randn(rng, 8, 1, 3, 3), pw, scale=np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"skip must have shape \(1, 2, 32, 32\)"):
        nat.upsample_block(x, randn(rng, 8, 1, 3, 3), pw, skip=np.zeros((1, 2, 16, 16), np.float32))
    with pytest.raises(ValueError, match="unknown isa 'bogus'"):
        nat.pointwise(x, pw, isa="bogus")
    with pytest.raises(ValueError, match="threads must be in"):
        nat.pointwise(x, pw, threads=0)
    with pytest.raises(ValueError, match="missing 'final.2.bias'"):
        heads = random_heads(rng)
        del heads["final.2.bias"]
        nat.output_head(randn(rng, 1, 32, 8, 8), randn(rng, 1, 2, 16, 16), randn(rng, 1, 3, 16, 16), heads)


# ------------------------------------------------------------------------------------------- dispatch
def _python(code: str, **env):
    import os

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_isa_choice():
    assert ISAS[-1] == "scalar"
    assert nat.default_isa() in ISAS
    forced = _python("from mfs_fast import _native as n; print(n.default_isa())", MFS_FAST_ISA="scalar")
    assert forced.stdout.strip() == "scalar", forced.stderr
    bad = _python("from mfs_fast import _native as n; n.default_isa()", MFS_FAST_ISA="bogus")
    assert bad.returncode != 0 and "unknown isa 'bogus'" in bad.stderr


def test_fused_without_extension_raises_cleanly():
    code = (
        "import sys; sys.modules['mfs_fast._native'] = None\n"
        "import mfs_fast\n"
        "from mfs_fast.backends.fused import FusedIDN\n"
        "try:\n"
        "    FusedIDN(None)  # models are never touched\n"
        "except mfs_fast.NativeUnavailableError as e:\n"
        "    print('raised:', e)\n"
    )
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("raised:") and "pip install -e ." in proc.stdout


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_thread_pool_survives_fork(rng):
    """A forked child has none of the parent's pool workers: it must start its own, not hang."""
    code = (
        "import os, numpy as np\n"
        "from mfs_fast import _native as n\n"
        "x = np.random.rand(1, 64, 28, 28).astype(np.float32); w = np.random.rand(32, 64).astype(np.float32)\n"
        "a = n.pointwise(x, w, threads=2)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if np.array_equal(a, n.pointwise(x, w, threads=2)) else 3)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    proc = _python(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "0", proc.stderr


def test_wrapper_follows_the_backend_contract(idn_setup):
    from mfs_fast.backends.base import Backend
    from mfs_fast.errors import MfsError
    from mfs_fast.backends.fused import FusedIDN

    models, identities, references = idn_setup
    fused = FusedIDN(models, threads=1)
    assert isinstance(fused, Backend) and fused.name == "fused"
    with pytest.raises(MfsError, match="set_identity"):
        fused.run(references[224, 1][0])
    with pytest.raises(ValueError, match="pointwise must be one of"):
        FusedIDN(models, pointwise="fused")
    with pytest.raises(ValueError, match="isa 'bogus' cannot run here"):
        FusedIDN(models, isa="bogus")
    fused.set_identity(identities[0])
    images, result, _ = references[224, 1]
    faces, masks = fused.run(images.astype(np.float64))  # like every backend: converted to float32
    assert faces.shape == (1, 3, 224, 224) and masks.shape == (1, 1, 224, 224)
    assert_close(faces, result, "faces from a float64 batch")


def test_set_identity_touches_only_per_identity_buffers(idn_setup):
    """Factored form: switching identity leaves every packed base W where it was and as it was
    (never repacked, never moved), and hands the engine O(C) floats per layer, not O(C^2)."""
    from mfs_fast.backends.fused import FusedIDN

    models, (a, b), references = idn_setup
    images = references[224, 1][0]
    fused = FusedIDN(models, threads=2, pointwise="factored")
    fused.set_identity(a)
    fused.run(images)
    engine = fused.native_engine(224)
    before = [engine.packed_base(layer) for layer in range(9)]
    assert all(copy.size > 0 for _, copy in before)
    for identity in (b, a, b):
        fused.set_identity(identity)
        fused.run(images)
        after = [engine.packed_base(layer) for layer in range(9)]
        for layer, ((addr0, w0), (addr1, w1)) in enumerate(zip(before, after)):
            assert addr0 == addr1, f"layer {layer}: packed W moved"
            assert np.array_equal(w0, w1), f"layer {layer}: packed W rewritten"
    depthwise, scale, demod = fused._identity
    pointwise = [*b.encoder_pointwise, *b.decoder_pointwise]
    for layer in range(9):
        c_out, c_in = pointwise[layer].shape[:2]
        handed = depthwise[layer].size + scale[layer].size + demod[layer].size
        assert scale[layer].shape == (c_in,) and demod[layer].shape == (c_out,)
        assert handed <= 17 * c_in + c_out  # the 4x4 / 3x3 depthwise kernel, s and d
    total = sum(d.size + s.size + m.size for d, s, m in zip(depthwise, scale, demod))
    assert total < 0.1 * sum(t.numel() for t in pointwise)  # vs the W~ the modulated form sends


def test_upsample_block_writes_into_a_given_out(rng):
    """out=: the block writes the caller's buffer (tvm-fused hands it the VM's tensor), same values."""
    x, dw, pw = (rng.standard_normal(s, dtype=np.float32) for s in ((2, 16, 7, 7), (16, 1, 3, 3), (8, 16)))
    skip = rng.standard_normal((2, 4, 14, 14), dtype=np.float32)
    expected = nat.upsample_block(x, dw, pw, skip=skip)
    out = np.full((2, 12, 14, 14), np.nan, np.float32)
    returned = nat.upsample_block(x, dw, pw, skip=skip, out=out)
    assert np.shares_memory(returned, out) and np.array_equal(out, expected)
    with pytest.raises(ValueError, match="out must have shape"):
        nat.upsample_block(x, dw, pw, out=np.empty((2, 9, 14, 14), np.float32))
    with pytest.raises(ValueError, match="overlap"):  # x's own 1568 floats as the output
        nat.upsample_block(x, dw, np.ascontiguousarray(pw[:4]), out=x.reshape(2, 4, 14, 14))


# ------------------------------------------------------------------------------------------- bfloat16
BF16 = pytest.mark.skipif(not (nat and nat.bf16_isa()), reason="this CPU lacks AVX512-BF16 (the bf16 kernels)")
# bf16 products (8-bit mantissas, float32 sums) through nine layers, on the conditioned random
# models: measured faces max 0.006-0.018 / mean 0.0005-0.0015, masks max 0.012-0.037 / mean
# 0.002-0.0055 (seeds 1-3); a wrong pair order or panel gives errors ~0.1 and more.
BF16_FACES = (0.05, 4e-3)  # (max, mean) abs error
BF16_MASKS = (0.08, 0.012)


def assert_close_bf16(ours, ref, bounds, what):
    err = np.abs(ours - ref)
    assert float(err.max()) <= bounds[0] and float(err.mean()) <= bounds[1], \
        f"{what}: max {float(err.max()):.3g} (<= {bounds[0]}), mean {float(err.mean()):.3g} (<= {bounds[1]})"


@BF16
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("size,batch", [(224, 3), (256, 1)])
def test_bfloat16_idn_is_close_to_torch_and_thread_independent(form, size, batch, idn_setup):
    from mfs_fast.backends.fused import FusedIDN

    models, identities, references = idn_setup
    images, result, mask = references[size, batch]
    outputs = []
    for threads in THREADS:
        fused = FusedIDN(models, threads=threads, pointwise=form, precision="bfloat16")
        assert fused.isa == nat.bf16_isa() and fused.precision == "bfloat16"
        fused.set_identity(identities[0])
        faces, masks = fused.run(images)
        assert_close_bf16(faces, result, BF16_FACES, f"faces, {threads} threads")
        assert_close_bf16(masks, mask, BF16_MASKS, f"masks, {threads} threads")
        outputs.append((faces, masks))
    for faces, masks in outputs[1:]:
        assert np.array_equal(faces, outputs[0][0]) and np.array_equal(masks, outputs[0][1])
    # it really multiplies in bf16: not the float32 result
    exact = FusedIDN(models, threads=2, pointwise=form)
    exact.set_identity(identities[0])
    assert float(np.abs(exact.run(images)[0] - outputs[0][0]).mean()) > 1e-5


@BF16
@pytest.mark.parametrize("form", FORMS)
def test_bfloat16_identity_switch_a_b_a(form, idn_setup):
    """Identity B through the bf16 engine, then A again bit-identical (bf16 packs follow identities)."""
    from mfs_fast.backends.fused import FusedIDN

    models, (a, b), references = idn_setup
    images, _, _ = references[224, 3]
    idn = FusedIDN(models, threads=2, pointwise=form, precision="bfloat16")
    idn.set_identity(a)
    first = idn.run(images)
    idn.set_identity(b)
    with torch.no_grad():
        result_b, _ = models.idn(torch.from_numpy(images), b)
    assert_close_bf16(idn.run(images)[0], result_b.numpy(), BF16_FACES, "identity B")
    idn.set_identity(a)
    again = idn.run(images)
    assert np.array_equal(again[0], first[0]) and np.array_equal(again[1], first[1])


def test_precision_choice_is_checked(idn_setup):
    from mfs_fast.backends.fused import FusedIDN

    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16"):
        FusedIDN(idn_setup[0], precision="half")
    if nat.bf16_isa():
        with pytest.raises(ValueError, match="runs on the 'avx512bf16' kernels, not isa 'scalar'"):
            FusedIDN(idn_setup[0], isa="scalar", precision="bfloat16")
    else:
        with pytest.raises(ValueError, match="needs a CPU with AVX512-BF16"):
            FusedIDN(idn_setup[0], precision="bfloat16")
    assert "avx512bf16" not in nat.isas() and nat.default_isa() != "avx512bf16"  # never chosen by itself
