"""``mfs-fast train``: the student's training loop (and Q's), resumable, logged, with samples."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..atomic import atomic_path
from ..face.paste import paste_weights
from ..errors import MfsError
from ..identity.dlib_adapter import DLIB_MAP
from ..preprocess import nhwc_to_nchw, to_unit, unit_chw_to_bgr
from .colour import colour_loss
from .config import TrainConfig
from .data import FaceCache, PairSampler, build_cache, load_prebuilt_cache
from .discriminator import MultiScaleDiscriminator
from .losses import (
    ATTRIBUTE_MAP,
    detail_loss,
    distillation_weight,
    gaussian_blur,
    hinge_discriminator_loss,
    hinge_generator_loss,
    identity_loss,
    kernel_gain_loss,
    kernel_gains,
    masked_mean,
    per_sample_l1,
    perceptual_loss,
    weak_mask_loss,
    with_target_detail,
)
from .student import inject_features, new_student, set_train_mode, swap_group, trainable_modules
from .precision import autocast_dtype
from .prefetch import LiveTeacher, Prefetcher, prefetch_in_thread, prepare_step
from .teacher_cache import CachedTeacher
from .teacher import create_teacher

CHECKPOINT = "checkpoint.pt"
PROBE_SOURCES = 4
STANDARDISE_FACES = 512  # faces whose dlib outputs set the identity adapter's input statistics ...
STANDARDISE_MIN_PEOPLE = 32  # ... when the data holds at least this many people
RECALIBRATION_GROUPS = 24  # (source, targets) groups measured for the exported BN statistics


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MfsError("config: device = \"cuda\" but this torch build sees no CUDA device")
    return torch.device(name)


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def adam(params, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam, fused where torch has the kernel: one pass over the student's 21M parameters
    instead of a dozen foreach passes (~40 ms of a CPU step, bench/RESULTS.md)."""
    return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999), fused=device.type in ("cpu", "cuda"))


def learning_rate(config: TrainConfig, step: int) -> float:
    """The student's learning rate at ``step`` (0-based): constant, or cosine to ``lr_final``."""
    if config.lr_schedule != "cosine":
        return config.lr
    progress = min(step / max(config.steps - 1, 1), 1.0)
    return config.lr_final + 0.5 * (config.lr - config.lr_final) * (1 + math.cos(math.pi * progress))


@dataclass
class StepLosses:
    values: dict[str, float]


class StudentTrainer:
    """Trains identity adapter + IIN + IDN (and the discriminator) per the config."""

    def __init__(self, config: TrainConfig) -> None:
        from ..identity import DlibIdentityEncoder

        self.config = config
        self.output = Path(config.output)
        self.output.mkdir(parents=True, exist_ok=True)
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.device = pick_device(config.device)
        self.amp_dtype = autocast_dtype(self.device, config.amp)
        self.encoder = DlibIdentityEncoder().to(self.device)
        # a second, different identity net in the loss, so the student cannot just please dlib
        self.second_encoder = None
        if config.second_identity and config.lambda_id_second:
            from ..identity import create_identity_encoder

            self.second_encoder = create_identity_encoder(config.second_identity).to(self.device).eval()
        info = load_prebuilt_cache(config.cache) if config.prebuilt_cache else build_cache(
            config.data, config.cache, config.size, config.holdout, config.video_stride, config.video_frames,
            config.max_faces)
        self.cache = FaceCache(info, config.size, seed=config.seed, max_pixel_upscale=config.max_pixel_upscale)
        self.sampler = PairSampler(self.cache, config.targets_per_source, config.same_image_share,
                                   config.same_identity_share, seed=config.seed,
                                   sharp_target_share=config.sharp_target_share,
                                   sharp_source_share=config.sharp_source_share,
                                   partners=config.teacher_partners if config.teacher else 0)
        if config.init_weights:
            from ..checkpoints import load_weights

            self.student = load_weights(config.init_weights)
            self.parent = _lineage(Path(config.init_weights))
            if not hasattr(self.student.identity, "prepare"):
                raise MfsError("init_weights: training starts only from dlib-adapter weights (ours), not from ArcFace ones")
        else:
            self.parent = None
            self.student = new_student(self.encoder)
            self._standardise_identity_inputs()
        self.student.identity.use_encoder(self.encoder)
        for module in trainable_modules(self.student):
            module.to(self.device)
        self.discriminator = MultiScaleDiscriminator().to(self.device)
        self.opt_g = adam(self._parameter_groups(), config.lr, self.device)
        self.opt_d = adam(self.discriminator.parameters(), config.lr_discriminator, self.device)
        # bf16 keeps fp32's exponent range: only fp16 needs its loss scaled
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.teacher = create_teacher(config.teacher, self.cache.mean_points())
        self.group_teacher = None
        if self.teacher is not None and config.teacher_partners:  # each pooled pair's swap is made once
            folder = Path(info.folder) / "teacher" / self.teacher.name.replace(":", "-")
            self.group_teacher = CachedTeacher(self.teacher, self.cache, folder)
        elif self.teacher is not None:
            self.group_teacher = LiveTeacher(self.teacher)
        weights = paste_weights(config.size, config.paste_eyes)  # the target's eyes, as Swapper(eyes=) pastes them
        self.paste_weights = None if weights is None else torch.from_numpy(weights.copy()).to(self.device)
        self.geometry = None
        if config.lambda_geometry:
            from .geometry import MeshGeometryLoss

            self.geometry = MeshGeometryLoss().to(self.device)
        self.quality = None
        if config.quality_model:
            from .quality import load_quality_model

            self.quality = load_quality_model(config.quality_model).to(self.device)
        self.step = 0
        self.probe = self._probe_groups()
        self._resume()
        # after _resume: the prefetch thread draws from the generators it reseeds
        self.prefetcher = Prefetcher(lambda: prepare_step(self.sampler, config.sources_per_step, self.group_teacher),
                                     enabled=prefetch_in_thread(config.prefetch, self.device))

    # ------------------------------------------------------------------ state
    @torch.no_grad()
    def _standardise_identity_inputs(self, faces: int = STANDARDISE_FACES) -> None:
        """The adapter's input statistics from dlib outputs of up to ``faces`` cached faces
        (left at mean 0, spread 1 when the data holds too few people to estimate them)."""
        if len(self.cache.by_identity) < STANDARDISE_MIN_PEOPLE:
            print(f"identity adapter inputs not standardised: {len(self.cache.by_identity)} people in the data, "
                  f"fewer than {STANDARDISE_MIN_PEOPLE}")
            return
        picks = np.random.default_rng(self.config.seed).permutation(len(self.cache))[:faces]
        embeddings, maps = [], []
        for start in range(0, len(picks), 32):
            batch = torch.stack([self.cache.augmented(int(i), augment=False)[0] for i in picks[start:start + 32]])
            features = self.encoder.embed(batch.to(self.device))
            embeddings.append(features.embedding)
            maps.append(features.maps[DLIB_MAP])
        self.student.identity.standardise_inputs(torch.cat(embeddings).float().cpu(), torch.cat(maps).float().cpu())

    def _probe_groups(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Fixed (source, targets) for sample grids and Q snapshots: the first cached faces."""
        n = len(self.cache)
        picks = [int(i) for i in np.linspace(0, n - 1, PROBE_SOURCES + 3).round()]
        sources = [self.cache.augmented(i, augment=False)[0] for i in picks[:PROBE_SOURCES]]
        targets = torch.stack([self.cache.augmented(i, augment=False)[0] for i in picks[PROBE_SOURCES:]])
        return [(s, targets) for s in sources]

    def _state(self) -> dict:
        return {
            "step": self.step,
            "identity": self.student.identity.state_dict(), "iin": self.student.iin.state_dict(),
            "idn": self.student.idn.state_dict(), "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "config": json.dumps(self.config.to_dict()),
        }

    def _resume(self) -> None:
        path = self.output / CHECKPOINT
        if not path.is_file():
            return
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.student.identity.load_state_dict(state["identity"])
        self.student.iin.load_state_dict(state["iin"])
        self.student.idn.load_state_dict(state["idn"])
        self.discriminator.load_state_dict(state["discriminator"])
        for optimiser, key in ((self.opt_g, "opt_g"), (self.opt_d, "opt_d")):
            fused = [group["fused"] for group in optimiser.param_groups]
            optimiser.load_state_dict(state[key])
            for group, flag in zip(optimiser.param_groups, fused):  # a checkpoint's own flag would win
                group["fused"] = flag
        self.step = int(state["step"])
        # the data order after a resume differs from an uninterrupted run, but stays seeded
        self.sampler.rng = np.random.default_rng(self.config.seed + 1 + self.step)
        self.cache.rng = np.random.default_rng(self.config.seed + self.step)
        print(f"resumed from {path} at step {self.step}")

    def prefill_teacher(self, progress: bool = True) -> int:
        """With a cached teacher: swap every pair of the partner pool not in the cache yet (the
        prefetch thread, if any, is drained first: both would use the teacher). Returns how many
        swaps were made."""
        if not isinstance(self.group_teacher, CachedTeacher):
            return 0
        self.prefetcher.drain()
        return self.group_teacher.fill(self.sampler.distilled_pool(), progress)

    def save_checkpoint(self) -> Path:
        if isinstance(self.group_teacher, CachedTeacher):
            self.group_teacher.save()
        path = self.output / CHECKPOINT
        _atomic_torch_save(self._state(), path)
        return path

    def export(self, folder: Path | None = None) -> Path:
        """Write the student's weights; with a lossy storage, also measure what it costs: the
        probe swaps of the stored weights vs the fp32 student (recorded in the manifest)."""
        from ..checkpoints import save_weights
        from ..checkpoints.native_format import storage_roundtrip

        folder = folder or self.output / "weights"
        provenance = {"trained_by": "mfs-fast train", "steps": self.step,
                      "data": [Path(p).name for p in self.config.data],
                      "teacher": self.config.teacher or "none", "holdout": self.config.holdout,
                      "batch_norm_recalibrated": self.recalibrate()}
        if self.parent:
            provenance["init_weights"] = self.parent
            provenance["total_steps"] = self.parent["total_steps"] + self.step
        self.student.eval()
        if self.config.export_storage != "fp32":
            stored = storage_roundtrip(self.student, self.config.export_storage)
            stored.identity.use_encoder(self.encoder)
            for module in trainable_modules(stored):
                module.to(self.device)
            errors = []
            with torch.no_grad():
                for (source, targets), expected in zip(self.probe, self.probe_results()):
                    got = swap_group(stored, source.to(self.device), targets.to(self.device))[0]
                    errors.append((got - expected).abs())
            error = torch.cat([e.flatten() for e in errors])
            provenance["storage_error_vs_fp32"] = {"max_abs": float(error.max()), "mean_abs": float(error.mean()),
                                                   "on": "probe swaps, RGB in [0, 1]"}
        # trained for that paste: the Swapper's default
        self.student.paste_detail = self.config.keep_target_detail
        self.student.paste_chroma = self.config.paste_chroma
        self.student.paste_brightness = self.config.paste_brightness
        self.student.paste_eyes = self.config.paste_eyes
        save_weights(self.student, folder, provenance=provenance, storage=self.config.export_storage)
        return folder

    def recalibrate(self, groups: int = RECALIBRATION_GROUPS) -> int:
        """Population BN statistics for the IDN (see :mod:`.batchnorm`) from fresh pairs."""
        from .batchnorm import recalibrate_batch_norm

        self.prefetcher.drain()  # the sampler is the prefetch thread's until its step is drawn

        def run_batches():
            set_train_mode(self.student)
            for _ in range(groups):
                group = self.sampler.group()
                targets = group.targets.to(self.device).contiguous(memory_format=torch.channels_last)
                swap_group(self.student, group.source.to(self.device), targets)
                yield

        with torch.no_grad():
            return recalibrate_batch_norm(self.student.idn, run_batches)

    # ------------------------------------------------------------------ one step
    def train_step(self) -> StepLosses:
        config, device = self.config, self.device
        set_train_mode(self.student)
        inputs = self.prefetcher.next()
        groups = inputs.groups
        with self._autocast():
            results, masks, face_masks, recon, pixel, source_ids = [], [], [], [], [], []
            kernels, teacher_rows = [], []
            sources = torch.stack([group.source for group in groups]).to(device)
            # channels-last: the depthwise convs' backward is ~5x faster so on CPU
            target = torch.cat([group.targets for group in groups]).to(device).contiguous(
                memory_format=torch.channels_last)
            offsets = np.cumsum([0] + [len(group.targets) for group in groups])
            teacher_out = [taught.to(device) for taught in inputs.teacher_out if taught is not None]
            teach = torch.cat(teacher_out).float() if teacher_out else target[:0].float()
            with torch.no_grad():  # dlib is frozen: one pass over every image it sees as a constant
                source_features, target_id, teacher_id = self.encoder.embed(torch.cat((sources, target, teach))).split(
                    [len(sources), len(target), len(teach)])
            # every source's kernels in one batched IIN pass (batch-1 passes cost ~3x more)
            identity_weights = inject_features(self.student, source_features)
            for group, source_embedding, weights, rows, taught, offset in zip(
                    groups, source_features.embedding, identity_weights, inputs.teacher_rows, inputs.teacher_out,
                    offsets):
                group_targets = target[offset:offset + len(group.targets)]
                kernels += [*weights.encoder_depthwise, *weights.decoder_depthwise]
                result, mask = self.student.idn(group_targets, weights)
                results.append(result)
                masks.append(mask)
                face_masks.append(group.target_masks.to(device))
                recon.append(group.reconstruction.to(device))
                pixel.append(group.pixel_target.to(device))
                source_ids.append(source_embedding.expand(len(group_targets), -1))
                if taught is not None:  # the teacher's swaps of these rows
                    teacher_rows.append(rows + int(offset))
            result, mask = torch.cat(results), torch.cat(masks)
            if config.keep_target_detail or config.paste_chroma < 1 or config.paste_brightness < 1 \
                    or self.paste_weights is not None:
                # train what the Swapper will show: the target's fine detail (and colour, and eyes) kept
                paste_mask = mask.float() if self.paste_weights is None else mask.float() * self.paste_weights
                result = with_target_detail(result.float(), target.float(), paste_mask, config.keep_target_detail,
                                            config.paste_chroma, config.paste_brightness)
            face_mask, recon = torch.cat(face_masks), torch.cat(recon).float()
            pixel = torch.cat(pixel).float()  # pixel losses only where the target is sharp enough
            source_embedding = torch.cat(source_ids)
            result_id = self.encoder.embed(result.float())
            losses = {}
            losses["id"] = identity_loss(source_embedding, result_id.embedding).mean()
            losses["rec"] = masked_mean(per_sample_l1(result, target), recon * pixel)
            losses["per"] = masked_mean(perceptual_loss(result_id.maps, target_id.maps), recon * pixel)
            cross = 1.0 - recon
            losses["attr"] = masked_mean(per_sample_l1(result_id.maps[ATTRIBUTE_MAP], target_id.maps[ATTRIBUTE_MAP]), cross)
            losses["mask"] = weak_mask_loss(mask, face_mask, config.mask_face_weight).mean()
            total = (config.lambda_id * losses["id"] + config.lambda_rec * losses["rec"]
                     + config.lambda_per * losses["per"] + config.lambda_attr * losses["attr"]
                     + config.lambda_mask * losses["mask"])
            if self.geometry is not None:  # pose and expression: where the features sit, on cross pairs
                target_points = torch.cat([group.target_points for group in groups]).to(device)
                losses["geometry"] = masked_mean(self.geometry(result.float(), target.float(), target_points), cross)
                total = total + config.lambda_geometry * losses["geometry"]
            if self.second_encoder is not None:
                with torch.no_grad():
                    second_source = self.second_encoder.embed(sources).embedding
                rows_per_source = torch.tensor([len(group.targets) for group in groups], device=device)
                second_result = self.second_encoder.embed(result.float()).embedding
                losses["id2"] = identity_loss(second_source.repeat_interleave(rows_per_source, dim=0),
                                              second_result).mean()
                total = total + config.lambda_id_second * losses["id2"]
            if config.lambda_detail:
                losses["detail"] = detail_loss(result.float(), target, face_mask, config.detail_sigma).mean()
                total = total + config.lambda_detail * losses["detail"]
            if config.lambda_colour:  # the target's skin tone and eye colour kept, over the whole face
                losses["colour"] = colour_loss(result, target, face_mask, config.colour_sigma, config.colour_lightness,
                                               config.colour_margin).mean()
                total = total + config.lambda_colour * losses["colour"]
            if config.lambda_kernel:
                losses["kernel"] = kernel_gain_loss(kernels)
                total = total + config.lambda_kernel * losses["kernel"]
            with torch.no_grad():  # health: a collapsing mask or drifting kernels show here first
                losses["mask_face"] = (mask * face_mask).sum() / face_mask.sum().clamp_min(1.0)
                losses["kernel_gain"] = kernel_gains(kernels).max()
                # identity transfer on cross pairs: how much closer to the source the result is than the target
                gain = (source_embedding * (result_id.embedding - target_id.embedding)).sum(dim=1)
                losses["id_gain"] = masked_mean(gain, cross)
            if teacher_out:
                rows = torch.cat(teacher_rows).to(device)
                with torch.no_grad():
                    quality = self.quality(teach) if self.quality is not None else None
                alpha = distillation_weight(source_embedding[rows], teacher_id.embedding, quality)
                result_maps = {name: value[rows] for name, value in result_id.maps.items()}
                student_pixels = result[rows]
                if config.distill_lowpass:  # the high band is the target's (detail loss), not the teacher's
                    student_pixels = gaussian_blur(student_pixels.float(), config.detail_sigma)
                    teach_pixels = gaussian_blur(teach, config.detail_sigma)
                else:
                    teach_pixels = teach
                losses["distill_rec"] = masked_mean(per_sample_l1(student_pixels, teach_pixels), alpha)
                losses["distill_per"] = masked_mean(perceptual_loss(result_maps, teacher_id.maps), alpha)
                losses["alpha"] = alpha.mean()  # over the distilled pairs
                total = total + config.lambda_rec * losses["distill_rec"] + config.lambda_per * losses["distill_per"]
            use_gan = config.lambda_gan > 0 and self.step >= config.gan_start
            if use_gan:
                losses["gan_g"] = hinge_generator_loss(self.discriminator(result))
                total = total + config.lambda_gan * losses["gan_g"]
        self._set_learning_rate()
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if config.grad_clip:
            self.scaler.unscale_(self.opt_g)
            params = [p for group in self.opt_g.param_groups for p in group["params"]]
            losses["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        self.scaler.step(self.opt_g)
        if use_gan:
            with self._autocast():
                loss_d = hinge_discriminator_loss(self.discriminator(target), self.discriminator(result.detach()))
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(loss_d).backward()
            self.scaler.step(self.opt_d)
            losses["gan_d"] = loss_d
        self.scaler.update()
        self.step += 1
        losses["total"] = total
        values = {k: float(v.detach()) for k, v in losses.items()}
        if not all(math.isfinite(v) for v in values.values()):
            raise MfsError(f"training diverged at step {self.step}: {values}")
        return StepLosses(values)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    def _parameter_groups(self) -> list[dict]:
        """The IIN's kernel predictor apart: its convs have fan-ins of up to 4,608, so an Adam
        step (every weight moved by ~lr) moves a predicted kernel by ~lr x 4,608 x |features|:
        at lr 2e-4 as much as the kernel itself (measured: kernel gains jumping 100x in one
        step at lr 1e-3). It trains at ``lr x predictor_lr_scale``."""
        predictor = list(self.student.iin.predictor.parameters())
        chosen = {id(p) for p in predictor}
        rest = [p for m in trainable_modules(self.student) for p in m.parameters() if id(p) not in chosen]
        return [{"params": rest, "lr_scale": 1.0},
                {"params": predictor, "lr_scale": self.config.predictor_lr_scale}]

    def _set_learning_rate(self) -> None:
        for group in self.opt_g.param_groups:
            group["lr"] = learning_rate(self.config, self.step) * group["lr_scale"]

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def probe_results(self) -> list[torch.Tensor]:
        self.student.eval()
        outs = []
        for source, targets in self.probe:
            outs.append(swap_group(self.student, source.to(self.device), targets.to(self.device))[0])
        return outs

    def write_samples(self) -> Path:
        """A PNG grid: one row per probe source: source | each target's result; top row: targets."""
        results = self.probe_results()
        targets = self.probe[0][1]
        blank = np.full((self.config.size, self.config.size, 3), 255, np.uint8)
        rows = [np.hstack([blank] + [unit_chw_to_bgr(t) for t in targets])]
        for (source, _), result in zip(self.probe, results):
            rows.append(np.hstack([unit_chw_to_bgr(source)] + [unit_chw_to_bgr(r) for r in result]))
        grid = np.vstack(rows)
        folder = self.output / "samples"
        folder.mkdir(exist_ok=True)
        path = folder / f"step_{self.step:07d}.png"
        with atomic_path(path, tag="png") as tmp:
            cv2.imwrite(str(tmp), grid)
        return path

    def write_snapshot(self) -> Path:
        """Probe outputs as single PNGs: training data for the quality regressor Q."""
        folder = self.output / "snapshots" / f"step_{self.step:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, result in enumerate(self.probe_results()):
            for j, image in enumerate(result):
                cv2.imwrite(str(folder / f"{i}_{j}.png"), unit_chw_to_bgr(image))
        return folder

    def run(self, progress: bool = True) -> Path:
        """Train to ``steps`` (or until ``max_minutes`` of steps have passed), then checkpoint,
        write samples and export the weights; returns the weights folder."""
        config = self.config
        log_path = self.output / "log.jsonl"
        start = time.perf_counter()
        deadline = start + 60 * config.max_minutes if config.max_minutes else math.inf
        if config.teacher_prefill:
            self.prefill_teacher(progress)
        bar = tqdm(total=config.steps, initial=self.step, desc="training", unit="step", disable=not progress)
        with log_path.open("a") as log:
            while self.step < config.steps:
                losses = self.train_step()
                bar.update(1)
                out_of_time = time.perf_counter() >= deadline
                if self.step % config.log_every == 0 or self.step == config.steps or out_of_time:
                    record = {"step": self.step, "seconds": round(time.perf_counter() - start, 2), **losses.values}
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    bar.set_postfix(id=f"{losses.values['id']:.3f}", rec=f"{losses.values['rec']:.3f}")
                if config.sample_every and self.step % config.sample_every == 0:
                    self.write_samples()
                if config.snapshot_every and self.step % config.snapshot_every == 0:
                    self.write_snapshot()
                if config.checkpoint_every and self.step % config.checkpoint_every == 0:
                    self.save_checkpoint()
                if out_of_time:
                    bar.write(f"stopping at step {self.step} of {config.steps}: max_minutes = {config.max_minutes:g} "
                              f"reached ({time.perf_counter() - start:.0f} s)")
                    break
        bar.close()
        self.save_checkpoint()
        self.write_samples()
        try:
            return self.export()
        finally:
            self.prefetcher.close()  # the step drawn ahead is dropped: the next run resumes from the checkpoint


def train_quality(config: TrainConfig, progress: bool = True) -> Path:
    """Fit Q to snapshot progress labels (L1), then save ``<output>/quality.safetensors``."""
    from .quality import QualityRegressor, read_snapshots, save_quality_model

    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    images, labels = read_snapshots(config.snapshots)
    model = QualityRegressor().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    batch = min(16, len(images))
    with (output / "quality_log.jsonl").open("a") as log:
        for step in tqdm(range(1, config.steps + 1), desc="training Q", disable=not progress):
            pick = rng.choice(len(images), size=batch, replace=False)
            x = to_unit(nhwc_to_nchw(images[pick]).contiguous()).to(device)
            if rng.random() < 0.5:
                x = x.flip(3)
            y = torch.from_numpy(labels[pick]).to(device)
            loss = (model(x) - y).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % config.log_every == 0 or step == config.steps:
                log.write(json.dumps({"step": step, "l1": float(loss)}) + "\n")
    path = output / "quality.safetensors"
    save_quality_model(model.eval(), path)
    return path


def train(config: TrainConfig, progress: bool = True) -> Path:
    """Run the configured training; returns the weights folder (student) or Q's file."""
    if config.kind == "quality":
        return train_quality(config, progress)
    return StudentTrainer(config).run(progress)


def _lineage(folder: Path) -> dict:
    """What a fine-tune started from (its manifest's steps and storage), so the exported
    manifest says how many steps the weights saw in all, across stages."""
    from ..checkpoints.native_format import MANIFEST, read_manifest

    manifest = read_manifest(folder / MANIFEST)
    before = manifest["provenance"]
    steps = int(before.get("steps", 0))
    return {"steps": steps, "total_steps": int(before.get("total_steps", steps)),
            "storage": manifest.get("storage", "unknown"), "teacher": before.get("teacher", "unknown")}
