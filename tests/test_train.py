"""Training: config, data cache, a smoke run whose loss goes down, checkpoints, teachers and Q."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import _astronaut_bgr
from mfs_fast.errors import MfsError
from mfs_fast.train import StudentTrainer, load_config, train
from mfs_fast.train.data import FaceCache, build_cache
from mfs_fast.train.student import set_train_mode, swap_group


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """Three photos from skimage's astronaut (shifted, scaled, mirrored) with a manifest."""
    folder = tmp_path_factory.mktemp("photos")
    image = _astronaut_bgr()
    variants = {
        "a.jpg": image,
        "b.jpg": cv2.flip(image, 1),
        "c.jpg": cv2.resize(image[40:500, 60:480], (380, 416)),
    }
    for name, picture in variants.items():
        cv2.imwrite(str(folder / name), picture)
    (folder / "manifest.csv").write_text("file,identity\na.jpg,eileen\nb.jpg,eileen\nc.jpg,eileen\n")
    return folder


@pytest.fixture(scope="module")
def unnamed_folder(tmp_path_factory, photo_folder) -> Path:
    """The same photos without a manifest: every photo is its own identity (only cross pairs)."""
    folder = tmp_path_factory.mktemp("unnamed")
    for photo in photo_folder.glob("*.jpg"):
        (folder / photo.name).write_bytes(photo.read_bytes())
    return folder


def _write_config(folder: Path, **fields) -> Path:
    base = {"data": [str(p) for p in fields.pop("data")], "output": "out", "steps": 4, "sources_per_step": 1,
            "targets_per_source": 2, "log_every": 1, "sample_every": 2, "checkpoint_every": 2, "threads": 2}
    base.update(fields)
    lines = []
    for key, value in base.items():
        lines.append(f"{key} = {json.dumps(value)}" if not isinstance(value, dict) else
                     f"{key} = {{ {', '.join(f'{k} = {json.dumps(v)}' for k, v in value.items())} }}")
    path = folder / "train.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_config_errors(tmp_path, photo_folder):
    with pytest.raises(MfsError, match="not found"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('data = ["x"]\nlearning_rate = 1\n')
    with pytest.raises(MfsError, match="unknown config keys learning_rate"):
        load_config(bad)
    bad.write_text('data = ["no_such_folder"]\n')
    with pytest.raises(MfsError, match="data folder not found"):
        load_config(bad)
    bad.write_text("data = [\n")
    with pytest.raises(MfsError, match="not valid TOML"):
        load_config(bad)
    for line, message in (('teacher_prefill = "yes"', "teacher_prefill must be true or false, got 'yes'"),
                          ('steps = "1000"', "steps must be a whole number"), ("steps = true", "steps must be a whole number"),
                          ("steps = 1e3", "steps must be a whole number"), ('lr = "1e-4"', "lr must be a number"),
                          ('data = "photos"', "data must be a list"), ("teacher = 1", "teacher must be a table")):
        bad.write_text(line + "\n")
        with pytest.raises(MfsError, match=message):
            load_config(bad)
    bad.write_text(f'data = ["{photo_folder}"]\nlr = 1\nsteps = 3\n')  # a whole number where a number is asked
    assert load_config(bad).lr == 1
    config = load_config(_write_config(tmp_path, data=[photo_folder]))
    assert Path(config.output) == (tmp_path / "out").resolve() and Path(config.cache) == Path(config.output) / "cache"


def test_cache_holds_aligned_crops_masks_and_identities(tmp_path, photo_folder):
    info = build_cache([str(photo_folder)], tmp_path / "cache", holdout=["c.jpg"])
    assert [Path(e["file"]).name for e in info.entries] == ["a.jpg", "b.jpg"]
    assert {e["identity"] for e in info.entries} == {"eileen"}
    cache = FaceCache(info)
    crop, mask = cache.raw(0)
    assert crop.shape == (224, 224, 3) and mask.shape == (224, 224)
    face_share = (mask > 127).mean()
    assert 0.2 < face_share < 0.8  # the face hull covers the middle of the crop, not all of it
    assert mask[112, 112] == 255 and mask[5, 5] == 0
    image, face = cache.augmented(0)
    assert image.shape == (3, 224, 224) and face.shape == (1, 224, 224) and 0 <= image.min() <= image.max() <= 1
    again = build_cache([str(photo_folder)], tmp_path / "cache", holdout=["c.jpg"])  # reused, not rebuilt
    assert again.entries == info.entries


def test_pixel_targets_are_only_crops_upscaled_within_the_limit(tmp_path, photo_folder):
    """Each cached crop records its upscale factor; a crop above max_pixel_upscale is never a
    pixel target, and the sharp shares draw sources and targets from the sharp crops."""
    from mfs_fast.face import align_face, create_detector
    from mfs_fast.train.data import PairSampler, crop_upscale

    info = build_cache([str(photo_folder)], tmp_path / "cache")
    first = cv2.imread(info.entries[0]["file"])
    face = max(create_detector("blazeface").detect(first), key=lambda f: f.area)
    assert info.entries[0]["upscale"] == pytest.approx(crop_upscale(align_face(first, face.landmarks).matrix), abs=1e-3)
    small = cv2.resize(first, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    assert crop_upscale(align_face(small, face.landmarks * 0.5).matrix) == pytest.approx(
        2 * info.entries[0]["upscale"], rel=1e-3)  # half the pixels: twice the upscale
    for entry, upscale in zip(info.entries, (1.0, 2.0, 2.0)):
        entry["upscale"] = upscale
    cache = FaceCache(info, max_pixel_upscale=1.3)
    assert cache.sharp.tolist() == [True, False, False][:len(info.entries)]
    sharp_only = PairSampler(cache, 4, 0.0, 0.0, sharp_target_share=1.0, sharp_source_share=1.0)
    for _ in range(5):
        group = sharp_only.group()
        assert set(group.indices) == {0} and bool(group.pixel_target.all())
    anything = PairSampler(cache, 4, 0.0, 0.0, seed=3)
    seen = set()
    for _ in range(20):
        group = anything.group()
        seen.update(group.indices)
        expected = [bool(cache.sharp[t] and (r or cache.sharp[group.indices[0]]))
                    for t, r in zip(group.indices[1:], group.reconstruction.tolist())]
        assert group.pixel_target.tolist() == expected
    assert len(seen) == len(info.entries)


def test_smoke_run_learns_checkpoints_resume_and_export(tmp_path, photo_folder):
    """A few pure-reconstruction steps: the loss on fixed inputs goes down; the run writes
    its log, samples, checkpoint and weights; the weights load back and swap the same way;
    a longer run resumes from the checkpoint."""
    from mfs_fast.checkpoints import load_weights

    path = _write_config(tmp_path, data=[photo_folder], steps=8, same_image_share=1.0, same_identity_share=0.0,
                         lambda_gan=0.0, lr=3e-3, lambda_kernel=1.0, snapshot_every=4)
    trainer = StudentTrainer(load_config(path))
    assert torch.equal(trainer.student.identity.embedding_input_std, torch.ones(128))  # 1 person: not estimated
    source, targets = trainer.probe[0]

    def probe_l1() -> float:
        # in training mode: after 8 steps the BN running statistics are still mostly the initial ones
        set_train_mode(trainer.student)
        with torch.no_grad():
            result, _ = swap_group(trainer.student, source, source[None].expand(2, -1, -1, -1))
        return float((result - source).abs().mean())

    before = probe_l1()
    weights_dir = trainer.run(progress=False)
    rest, predictor = trainer.opt_g.param_groups  # the IIN's kernel predictor at a scaled-down rate
    assert predictor["lr"] == pytest.approx(rest["lr"] * 0.05) and rest["lr"] == pytest.approx(3e-3)
    assert {id(p) for p in predictor["params"]} == {id(p) for p in trainer.student.iin.predictor.parameters()}
    loaded = load_weights(weights_dir)
    assert loaded.identity.kind == "dlib-adapter"
    with torch.no_grad():
        trainer.student.eval()
        expected, _ = swap_group(trainer.student, source, targets)
        got, _ = swap_group(loaded, source, targets)
    assert torch.allclose(got, expected, atol=1e-5)
    after = probe_l1()
    assert after < 0.9 * before, (before, after)
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9)) and all(np.isfinite(r["total"]) for r in log)
    assert (tmp_path / "out" / "samples" / "step_0000008.png").is_file()
    assert len(list((tmp_path / "out" / "snapshots").glob("step_*"))) == 2

    resumed = StudentTrainer(load_config(path, {"steps": 10}))
    assert resumed.step == 8
    # the checkpoint's optimiser state does not switch the fused Adam step off
    assert all(group["fused"] for opt in (resumed.opt_g, resumed.opt_d) for group in opt.param_groups)
    resumed.run(progress=False)
    assert json.loads((tmp_path / "out" / "log.jsonl").read_text().splitlines()[-1])["step"] == 10


def test_distillation_from_onnx_and_model_teachers_and_quality_regressor(tmp_path, photo_folder, unnamed_folder):
    """Teachers: an ONNX (source, target) -> swap graph, and a weights folder; Q trained from
    snapshots reweights the teacher's samples (alpha is logged)."""
    import onnx  # noqa: F401  (torch.onnx.export needs it)

    from mfs_fast.train.quality import load_quality_model
    from mfs_fast.train.teacher import OnnxTeacher

    class Blend(torch.nn.Module):
        def forward(self, source, target):
            return 0.25 * source + 0.75 * target

    graph = tmp_path / "teacher.onnx"
    example = (torch.rand(2, 3, 224, 224), torch.rand(2, 3, 224, 224))
    torch.onnx.export(Blend(), example, str(graph), input_names=["source", "target"], output_names=["swap"],
                      dynamic_axes={"source": {0: "n"}, "target": {0: "n"}, "swap": {0: "n"}}, dynamo=False)
    teacher = OnnxTeacher(graph)
    source, targets = torch.rand(3, 224, 224), torch.rand(2, 3, 224, 224)
    assert torch.allclose(teacher(source, targets), 0.25 * source + 0.75 * targets, atol=1e-6)

    first = tmp_path / "first"
    first.mkdir()
    run = train(load_config(_write_config(first, data=[photo_folder], steps=4, lambda_gan=0.0, snapshot_every=2)),
                progress=False)
    q_dir = tmp_path / "q"
    q_dir.mkdir()
    q_file = train(load_config(_write_config(q_dir, data=[], kind="quality", snapshots=str(first / "out" / "snapshots"),
                                             steps=3)), progress=False)
    scores = load_quality_model(q_file)(torch.rand(3, 3, 224, 224))
    assert scores.shape == (3,) and bool(((scores >= 0) & (scores <= 1)).all())

    for spec in ({"kind": "onnx", "path": str(graph)}, {"kind": "mfs", "weights": str(run)}, {"kind": "mesh-warp"}):
        folder = tmp_path / spec["kind"]
        folder.mkdir()
        config = load_config(_write_config(folder, data=[unnamed_folder], steps=2, teacher=spec, quality_model=str(q_file),
                                           same_image_share=0.0, same_identity_share=0.0, targets_per_source=4))
        trainer = StudentTrainer(config)
        trainer.sampler.group = lambda: _cross_group(trainer)
        losses = trainer.train_step().values
        assert {"distill_rec", "distill_per", "alpha"} <= set(losses) and 0 < losses["alpha"] <= 1


def _cross_group(trainer):
    """Source photo 0 onto photos 1 and 2 (other identities): pairs a teacher is used on."""
    from mfs_fast.train.data import PairGroup

    cache = trainer.cache
    source, targets = cache.sample(0), [cache.sample(i) for i in (1, 2)]
    return PairGroup(source.image, torch.stack([t.image for t in targets]), torch.stack([t.face_mask for t in targets]),
                     torch.tensor([False, False]), torch.tensor([True, True]), source.points,
                     torch.stack([t.points for t in targets]))


def test_kernel_gain_loss_is_free_in_its_band_and_pulls_back_outside():
    from mfs_fast.train.losses import KERNEL_GAIN, kernel_gain_loss

    def kernels(gain: float) -> torch.Tensor:
        k = torch.randn(16, 1, 3, 3)
        k = k / k.pow(2).flatten(1).sum(1).mean().sqrt() * gain ** 0.5  # mean ||k_c||^2 = gain
        return k.requires_grad_(True)

    assert float(kernel_gain_loss([kernels(KERNEL_GAIN * 1.5), kernels(KERNEL_GAIN / 1.5)]).detach()) == 0.0
    for gain, direction in ((KERNEL_GAIN * 50, -1), (KERNEL_GAIN / 50, 1)):
        k = kernels(gain)
        loss = kernel_gain_loss([k])
        assert float(loss.detach()) > 1.0
        loss.backward()
        # a gradient step changes the kernel's scale toward the band
        assert direction * float((k.grad * k).sum()) < 0


def test_cosine_learning_rate_runs_from_lr_to_lr_final(tmp_path, photo_folder):
    from mfs_fast.train.trainer import learning_rate

    config = load_config(_write_config(tmp_path, data=[photo_folder], steps=101, lr=1e-3, lr_schedule="cosine",
                                       lr_final=1e-5))
    rates = [learning_rate(config, step) for step in range(101)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5) and rates[50] == pytest.approx(5.05e-4)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    constant = load_config(_write_config(tmp_path, data=[photo_folder], lr=1e-3))
    assert learning_rate(constant, 77) == 1e-3
    bad = tmp_path / "bad.toml"
    bad.write_text(f'data = ["{photo_folder}"]\nlr_schedule = "linear"\n')
    with pytest.raises(MfsError, match="lr_schedule must be one of"):
        load_config(bad)
    bad.write_text(f'data = ["{photo_folder}"]\nteacher = {{ kind = "gan" }}\n')
    with pytest.raises(MfsError, match="teacher.kind must be one of mfs, onnx, mesh-warp"):
        load_config(bad)


def test_cli_train_runs_the_smoke_config(tmp_path, photo_folder, capsys):
    from mfs_fast.cli import main

    path = _write_config(tmp_path, data=[photo_folder], steps=2, lambda_gan=0.0)
    assert main(["train", "--config", str(path)]) == 0
    assert "trained:" in capsys.readouterr().out
    assert (tmp_path / "out" / "weights" / "manifest.json").is_file()
    assert main(["train", "--config", str(path), "--export-only"]) == 0
    assert "exported step 2" in capsys.readouterr().out
    # a second stage from those weights: its manifest records the lineage and the total steps
    stage2 = tmp_path / "finetune.toml"
    stage2.write_text('base = "train.toml"\ninit_weights = "out/weights"\noutput = "out2"\nsteps = 3\n')
    assert main(["train", "--config", str(stage2)]) == 0
    provenance = json.loads((tmp_path / "out2" / "weights" / "manifest.json").read_text())["provenance"]
    assert provenance["steps"] == 3 and provenance["total_steps"] == 5
    assert provenance["init_weights"]["steps"] == 2 and provenance["init_weights"]["storage"] == "fp32"


def test_batch_norm_recalibration_makes_eval_match_training_mode():
    """A conv whose output grew to ~1e19 (as in the first starter run): after recalibration
    eval mode gives what training mode gives on the same data, with O(1) statistics."""
    from mfs_fast.train.batchnorm import recalibrate_batch_norm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.LeakyReLU(0.2))
    with torch.no_grad():
        net[0].weight.mul_(1e19)
        net[0].bias.mul_(1e19)
    data = [torch.rand(8, 3, 16, 16) for _ in range(4)]

    def run():
        net.train()
        for x in data:
            net(x)
            yield

    assert recalibrate_batch_norm(net, run) == 1
    assert float(net[1].running_var.max()) < 10 and torch.isfinite(net[1].running_mean).all()
    batch = torch.cat(data)
    with torch.no_grad():
        net.train()
        expected = net(batch)
        net.eval()
        got = net(batch)
    assert torch.allclose(got, expected, atol=1e-3)


def test_int8_storage_changes_outputs_little(tmp_path):
    """The starter's storage, measured on fresh random weights: int8 IIN + fp16 rest vs fp32."""
    from mfs_fast.checkpoints import load_weights, save_weights
    from mfs_fast.models import IDN, IIN, FaceSwapModels
    from mfs_fast.identity.dlib_adapter import DlibAdaptedIdentity
    from mfs_fast.train.student import swap_group

    models = FaceSwapModels(DlibAdaptedIdentity(), IIN(), IDN()).eval()
    save_weights(models, tmp_path / "q", storage="int8")
    quantized = load_weights(tmp_path / "q")
    source, targets = torch.rand(3, 224, 224), torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        expected, _ = swap_group(models, source, targets)
        got, _ = swap_group(quantized, source, targets)
    assert float((got - expected).abs().max()) < 0.02  # of a [0, 1] range
    assert float((got - expected).abs().mean()) < 0.002


def test_identity_adapter_standardises_dlib_outputs_and_stores_the_statistics_fp32(tmp_path):
    """dlib descriptors share a large component (cosine ~0.8 between different people): the
    adapter subtracts the faces' mean and divides by their spread, statistics saved exactly."""
    from mfs_fast.checkpoints import load_weights, save_weights
    from mfs_fast.models import IDN, IIN, FaceSwapModels
    from mfs_fast.identity.dlib_adapter import DlibAdaptedIdentity

    identity = DlibAdaptedIdentity()
    common = torch.nn.functional.normalize(torch.randn(128), dim=0)
    embeddings = torch.nn.functional.normalize(common + 0.3 * torch.randn(200, 128) / 128 ** 0.5, dim=1)
    maps = torch.relu(torch.randn(200, 256, 4, 4) * 3 + 1)
    identity.standardise_inputs(embeddings, maps)
    mean_embedding = embeddings.mean(0, keepdim=True)
    mean_map = maps.mean(dim=(0, 2, 3))[None, :, None, None].expand(1, 256, 4, 4)
    z, _ = identity.adapt(mean_embedding, mean_map)
    assert torch.allclose(z[0], identity.embedding.bias, atol=1e-5)  # the mean face maps to the bias alone
    spread = (embeddings - identity.embedding_input_mean) / identity.embedding_input_std
    assert torch.allclose(spread.std(0), torch.ones(128), atol=1e-3)

    models = FaceSwapModels(identity, IIN(), IDN()).eval()
    save_weights(models, tmp_path / "w", storage="int8")
    loaded = load_weights(tmp_path / "w").identity
    for name in ("embedding_input_mean", "embedding_input_std", "map_input_mean", "map_input_std"):
        assert torch.equal(getattr(loaded, name), getattr(identity, name)), name


def test_config_base_inherits_keys_and_resolves_paths_per_file(tmp_path, photo_folder):
    stage1 = _write_config(tmp_path, data=[photo_folder], steps=7, lr=1e-3)
    (tmp_path / "stage2").mkdir()
    stage2 = tmp_path / "stage2" / "finetune.toml"
    stage2.write_text('base = "../train.toml"\ninit_weights = "../out/weights"\noutput = "out2"\nsteps = 3\n')
    config = load_config(stage2)
    assert config.steps == 3 and config.lr == 1e-3 and config.data == [str(photo_folder)]
    # a base's paths stay relative to the base; this file's to this file
    assert Path(config.init_weights) == (tmp_path / "out" / "weights").resolve()
    assert Path(config.output) == (tmp_path / "stage2" / "out2").resolve()
    assert load_config(stage1).output == str((tmp_path / "out").resolve())
    loop = tmp_path / "loop.toml"
    loop.write_text('base = "loop.toml"\n')
    with pytest.raises(MfsError, match="base chain loops back"):
        load_config(loop)
    missing = tmp_path / "missing.toml"
    missing.write_text('base = "nowhere.toml"\n')
    with pytest.raises(MfsError, match="base config not found"):
        load_config(missing)
    bad = tmp_path / "badbase.toml"
    bad.write_text('base = "train.toml"\nlearning_rate = 1\n')
    with pytest.raises(MfsError, match="unknown config keys learning_rate"):
        load_config(bad)


def test_starter_configs_load_and_stage2_starts_from_stage1():
    root = Path(__file__).resolve().parents[1] / "configs"
    if not (root.parent.parent / "shared" / "datasets" / "faces_v1").is_dir():
        pytest.skip("../shared/datasets/faces_v1 is absent: the starter configs' data folder must exist to load")
    stage1, stage2 = load_config(root / "starter.toml"), load_config(root / "starter-finetune.toml")
    stage3 = load_config(root / "starter-stage3.toml")
    assert stage2.init_weights == str(Path(stage1.output) / "weights")
    assert stage3.init_weights == str(Path(stage2.output) / "weights") and stage3.lr == stage2.lr == 2e-4
    assert len({stage1.output, stage2.output, stage3.output}) == 3 and {stage2.seed, stage3.seed} == {1, 2}
    assert stage2.holdout == stage1.holdout and stage2.teacher == stage1.teacher and stage2.cache == stage1.cache
    stage4, stage5 = load_config(root / "starter-v4.toml"), load_config(root / "starter-v5.toml")
    assert stage5.init_weights == str(Path(stage4.output) / "weights") and stage5.cache == stage4.cache
    assert stage4.holdout == stage5.holdout == stage1.holdout and stage5.distill_lowpass and stage5.lambda_detail > 0
    assert stage5.second_identity == "faceres"  # mobileface stays out of training: it only evaluates


def test_iin_inject_many_matches_one_identity_at_a_time():
    """The batched injection (training) gives each identity the kernels the one-at-a-time IIN
    (inference) gives it, on fresh random inputs; BN in eval mode as in training."""
    from mfs_fast.identity.irse import l2_normalize
    from mfs_fast.models import IIN

    torch.manual_seed(int(np.random.default_rng().integers(1 << 30)))
    iin = IIN().eval()
    embeddings = l2_normalize(torch.randn(3, 512))
    maps = torch.randn(3, 512, 7, 7).contiguous(memory_format=torch.channels_last)  # as the adapter may hand it
    with torch.no_grad():
        batched = iin.inject_many(embeddings, maps)
        for n, weights in enumerate(batched):
            single = iin(embeddings[n:n + 1], maps[n:n + 1])
            for (name, got), (_, expected) in zip(weights.tensors(), single.tensors()):
                assert got.shape == expected.shape, name
                assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), (name, float((got - expected).abs().max()))
            for got, expected in zip(weights.encoder_modulation + weights.decoder_modulation,
                                     single.encoder_modulation + single.decoder_modulation):
                assert torch.allclose(got.demod, expected.demod, rtol=1e-5) and torch.equal(got.base, expected.base)
    with pytest.raises(ValueError, match="one identity at a time"):
        iin(embeddings, maps)


def test_detail_loss_is_zero_for_the_target_and_grows_with_blur():
    from mfs_fast.train.losses import detail_loss, gaussian_blur, high_pass

    target = torch.from_numpy(cv2.resize(_astronaut_bgr()[:400, 100:500], (224, 224))[..., ::-1].copy()).permute(2, 0, 1)
    target = target.float().div(255)[None]
    face = torch.zeros(1, 1, 224, 224)
    face[..., 40:180, 50:170] = 1
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(gaussian_blur(flat, 1.5), flat, atol=1e-6)  # constant in, constant out
    assert high_pass(target, 1.5).abs().mean() > 0.005
    assert float(detail_loss(target, target, face, 1.5)) == 0.0
    losses = [float(detail_loss(gaussian_blur(target, s), target, face, 1.5)) for s in (0.7, 1.5, 3.0)]
    assert 0 < losses[0] < losses[1] < losses[2], losses
    # only the face counts: changing the background changes nothing
    outside = target.clone()
    outside[..., :20, :] = torch.rand(1, 3, 20, 224)
    assert float(detail_loss(outside, target, face, 1.5)) == 0.0


def test_prefetched_steps_draw_the_same_data_as_a_serial_loop(tmp_path, photo_folder):
    """The prefetch thread draws exactly what a serial loop would, in order, and drain()
    loses no step."""
    from mfs_fast.train.data import PairSampler
    from mfs_fast.train.prefetch import Prefetcher, prepare_step

    info = build_cache([str(photo_folder)], tmp_path / "cache", 224)

    def sampler():
        return PairSampler(FaceCache(info, 224, seed=7), 2, 0.2, 0.1, seed=7)

    serial_sampler, threaded_sampler = sampler(), sampler()
    serial = [prepare_step(serial_sampler, 2, None) for _ in range(4)]
    prefetcher = Prefetcher(lambda: prepare_step(threaded_sampler, 2, None))
    threaded = [prefetcher.next(), prefetcher.next()]
    prefetcher.drain()
    threaded += [prefetcher.next(), prefetcher.next()]
    prefetcher.close()
    for a, b in zip(serial, threaded):
        for ga, gb in zip(a.groups, b.groups):
            assert ga.indices == gb.indices and torch.equal(ga.targets, gb.targets) and torch.equal(ga.source, gb.source)


def test_detail_loss_low_band_distillation_and_second_identity_train(tmp_path, photo_folder, unnamed_folder):
    """The stage-5 losses run end to end: detail, low-band distillation from the mesh-warp
    teacher and (when its model files are installed) faceres in the identity loss; with them
    stage 10's geometry loss on the cross pairs."""
    from mfs_fast.identity.tfjs_encoders import tfjs_encoder_available

    second = {"second_identity": "faceres", "lambda_id_second": 3.0} if tfjs_encoder_available("faceres") else {}
    path = _write_config(tmp_path, data=[unnamed_folder], steps=2, lambda_gan=0.0, lambda_detail=80.0,
                         same_image_share=0.0, same_identity_share=0.0,
                         distill_lowpass=True, teacher={"kind": "mesh-warp"}, sample_every=0, lambda_geometry=20.0,
                         **second)
    trainer = StudentTrainer(load_config(path))
    values = trainer.train_step().values
    assert values["detail"] > 0 and "distill_rec" in values and values["geometry"] > 0
    assert ("id2" in values) == bool(second)
    with pytest.raises(MfsError, match="second_identity"):
        load_config(_write_config(tmp_path, data=[photo_folder], second_identity="vgg"))


def test_with_target_detail_is_the_paste_the_swapper_makes():
    """Losses on a keep_target_detail run see target + mask * blur(result - target): the target
    outside the mask, a smooth change arriving whole, the result's own fine detail gone."""
    from mfs_fast.train.losses import gaussian_blur, with_target_detail

    torch.manual_seed(0)
    target = torch.rand(2, 3, 64, 64)
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1.0
    shifted = target + 0.2  # a smooth change (a constant)
    np.testing.assert_allclose(with_target_detail(shifted, target, mask, 1.5), target + 0.2 * mask, atol=1e-6)
    noisy = target + 0.3 * torch.randn_like(target)  # only fine detail changed
    kept = with_target_detail(noisy, target, mask, 1.5)
    assert (kept - target).abs().mean() < 0.2 * (noisy - target).abs().mean()
    assert torch.equal(kept[..., :8, :8], target[..., :8, :8])
    inside = (..., slice(16, 48), slice(16, 48))  # there: exactly the low band of the change
    assert torch.allclose((kept - target)[inside], gaussian_blur(noisy - target, 1.5)[inside], atol=1e-6)


def test_limit_colour_in_training_is_the_paste_the_swapper_makes():
    """The torch limit_colour (RGB, in the training composite) equals face.paste.limit_colour
    (BGR, in the paste) on fresh random changes and weights."""
    from mfs_fast.face.paste import limit_colour as paste_limit_colour
    from mfs_fast.train.losses import limit_colour, with_target_detail

    rng = np.random.default_rng()
    change = rng.normal(0, 0.1, (2, 3, 40, 40)).astype(np.float32)
    weights = rng.random((2, 1, 40, 40)).astype(np.float32)
    for chroma, brightness in [(0.0, 0.0), (0.3, 1.0), (1.0, 0.6)]:
        got = limit_colour(torch.from_numpy(change), torch.from_numpy(weights), chroma, brightness).numpy()
        for n in range(2):
            bgr = np.ascontiguousarray(change[n].transpose(1, 2, 0)[..., ::-1])
            expected = paste_limit_colour(bgr, weights[n, 0], chroma, brightness)[..., ::-1].transpose(2, 0, 1)
            np.testing.assert_allclose(got[n], expected, atol=1e-5)
    target = torch.rand(2, 3, 40, 40)
    mask = torch.from_numpy(weights)
    tinted = target + torch.tensor([0.1, -0.05, 0.0]).view(1, 3, 1, 1)
    composite = with_target_detail(tinted, target, mask, 0.0, chroma=0.0, brightness=0.0)
    assert torch.allclose(composite, target, atol=1e-6)  # a pure colour and brightness change: none pasted


def test_keep_target_detail_trains_and_the_export_records_it(tmp_path, photo_folder):
    path = _write_config(tmp_path, data=[photo_folder], steps=2, lambda_gan=0.0, keep_target_detail=1.5,
                         paste_chroma=0.0, paste_brightness=0.5, paste_eyes="target")
    trainer = StudentTrainer(load_config(path))
    assert trainer.paste_weights is not None and float(trainer.paste_weights.min()) == pytest.approx(0.0, abs=1e-3)
    trainer.train_step()
    folder = trainer.export(tmp_path / "exported")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["paste_detail"], manifest["paste_chroma"], manifest["paste_brightness"],
            manifest["paste_eyes"]) == (1.5, 0.0, 0.5, "target")
    from mfs_fast.checkpoints import load_weights

    loaded = load_weights(folder)
    assert (loaded.paste_detail, loaded.paste_chroma, loaded.paste_brightness, loaded.paste_eyes) == (1.5, 0.0, 0.5,
                                                                                                        "target")
    with pytest.raises(MfsError, match="paste_eyes"):
        load_config(_write_config(tmp_path, data=[photo_folder], paste_eyes="source"))
    with pytest.raises(MfsError, match="paste_chroma"):
        load_config(_write_config(tmp_path, data=[photo_folder], paste_chroma=2.0))
    with pytest.raises(MfsError, match="keep_target_detail"):
        load_config(_write_config(tmp_path, data=[photo_folder], keep_target_detail=-1.0))
