"""Training configuration: one TOML file, every field with a default, unknown keys rejected."""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import MfsError
from ..face.paste import EYES
from .prefetch import PREFETCH_SETTINGS
from .teacher import TEACHERS

KINDS = ("student", "quality")
LR_SCHEDULES = ("constant", "cosine")
SECOND_IDENTITY_NETS = ("faceres", "mobileface")  # mfs_fast.identity.create_identity_encoder names
PATH_FIELDS = ("output", "cache", "quality_model", "snapshots", "init_weights")  # relative to their file
# keys whose paths a config layer resolves before merging: the path fields, `data` (a list of
# folders) and the teacher's `weights` / `path`
RELATIVE_FIELDS = ("data", "teacher", *PATH_FIELDS)


@dataclass
class TrainConfig:
    """What ``mfs-fast train --config FILE`` runs. Paths are relative to the config file."""

    kind: str = "student"  # "student" (the face swapper) or "quality" (the regressor Q)
    data: list[str] = field(default_factory=list)  # folders of photos and/or videos
    output: str = "runs/train"
    cache: str = ""  # aligned-crop cache folder (default: <output>/cache)
    holdout: list[str] = field(default_factory=list)  # file names or identities never trained on
    max_faces: int = 0  # cap on cached faces (0: all)
    video_stride: int = 10  # cache every Nth frame of a clip ...
    video_frames: int = 30  # ... and at most this many per clip
    size: int = 224
    steps: int = 1000
    sources_per_step: int = 2  # identities injected per step (the IIN runs once per source)
    targets_per_source: int = 4
    same_image_share: float = 0.2  # target = the source image itself (reconstruction)
    same_identity_share: float = 0.1  # target = another image of the source's person
    max_pixel_upscale: float = 0.0  # crops upscaled more than this are never pixel targets (0: no limit)
    sharp_target_share: float = 0.0  # share of other-person targets drawn from the crops within that limit
    sharp_source_share: float = 0.0  # share of sources drawn from them (the rest: any crop, for more people)
    lr: float = 1e-4
    lr_schedule: str = "constant"  # "constant" or "cosine" (down to lr_final at the last step)
    lr_final: float = 1e-5
    predictor_lr_scale: float = 0.05  # the IIN's kernel predictor trains at lr x this (see StudentTrainer._parameter_groups)
    lr_discriminator: float = 2e-4
    grad_clip: float = 10.0  # max global gradient norm of the student's parameters (0: no clipping)
    lambda_id: float = 3.0
    lambda_rec: float = 30.0
    lambda_per: float = 5.0
    lambda_mask: float = 10.0
    mask_face_weight: float = 0.0  # also pull the mask toward 1 inside the face hull (see losses.weak_mask_loss)
    lambda_gan: float = 1.0
    lambda_kernel: float = 0.0  # keeps the predicted depthwise kernels at unit gain (see losses.kernel_gain_loss)
    lambda_attr: float = 1.0  # weak attribute loss (low-level identity-net maps vs the target)
    lambda_geometry: float = 0.0  # nose, mouth, lids and eye centres where the target's are, by the face mesh (see train/geometry.py)
    lambda_detail: float = 0.0  # high-pass band of the result vs the target's, inside the face (see losses.detail_loss)
    detail_sigma: float = 1.5  # the Gaussian that splits low from high band (crop pixels)
    distill_lowpass: bool = False  # distillation L1 on the low band only (the high band is the target's)
    lambda_colour: float = 0.0  # blurred Lab colour of the result vs the target's over the face hull (see train/colour.py)
    colour_sigma: float = 4.0  # its blur (crop pixels): the scale of a colour cast
    colour_lightness: float = 0.3  # the weight of lightness against chroma in it
    colour_margin: float = 0.0  # Lab units of mean distance left free
    keep_target_detail: float = 0.0  # losses see the result with the target's band finer than this (crop px), as Swapper(detail=) pastes it (0: off)
    paste_chroma: float = 1.0  # ... and with only this share of the change's colour, as Swapper(chroma=) pastes it (1: all)
    paste_brightness: float = 1.0  # ... and of its mean brightness over the mask, as Swapper(brightness=) (1: all)
    paste_eyes: str = "swap"  # ... and with the target's own eyes where "target", as Swapper(eyes=) pastes them
    second_identity: str = ""  # a second identity net in the loss ("faceres"); eval keeps another one out
    lambda_id_second: float = 0.0  # its 1 - cos(source, result) weight
    gan_start: int = 0  # step at which the adversarial loss starts
    teacher: dict[str, Any] = field(default_factory=dict)  # {} | {kind="mfs", weights=DIR} | {kind="onnx", path=F} | {kind="mesh-warp"}
    # > 0: each sharp source is distilled against its own fixed sharp partners (this many), so
    # every pair's teacher swap is made once and cached next to the crops (teacher_cache.py; ~15 KB
    # a swap: 14,336 pairs, ~210 MB, for the starter data at 8)
    teacher_partners: int = 0
    teacher_prefill: bool = True  # with partners: make the whole pool's swaps before the first step (saved, once per cache)
    quality_model: str = ""  # a Q checkpoint (from kind="quality"); teacher samples are weighted by it
    snapshots: str = ""  # kind="quality": folder of snapshots written by a teacher's run
    init_weights: str = ""  # start the student from this weights folder
    device: str = "auto"  # "auto", "cpu", "cuda"
    amp: bool = True  # mixed precision where the hardware has it: fp16 on CUDA, bf16 on CPUs with AVX512-BF16/AMX (precision.py)
    threads: int = 0  # torch CPU threads (0: torch's default)
    prefetch: str = "auto"  # next step's inputs in a thread: "thread", "off", or "auto" (when it has a core of its own)
    seed: int = 0
    log_every: int = 10
    sample_every: int = 200  # sample grid PNG
    checkpoint_every: int = 200
    snapshot_every: int = 0  # save probe outputs for training Q later (0: never)
    export_storage: str = "fp32"  # weights written at the end: fp32 | fp16 | int8
    # stop after this many minutes of training steps (0: no limit), then checkpoint and export as at
    # the last step: a lent GPU machine is held for minutes, not for a step count
    max_minutes: float = 0.0
    # use `cache` as it is, without the data folders and without checking it against them: on a
    # machine that has an unpacked `mfs-fast train --pack-cache` copy but not the photos (the
    # cache key lists the data's file paths, which exist only where the cache was built)
    prebuilt_cache: bool = False

    def resolve(self, base: Path) -> "TrainConfig":
        """Make the path fields absolute relative to ``base`` (the config file's folder)."""
        def absolute(p: str) -> str:
            return str((base / p).resolve()) if p and not Path(p).is_absolute() else p

        self.data = [absolute(p) for p in self.data]
        for name in PATH_FIELDS:
            setattr(self, name, absolute(getattr(self, name)))
        for key in ("weights", "path"):
            if key in self.teacher:
                self.teacher[key] = absolute(self.teacher[key])
        if not self.cache:
            self.cache = str(Path(self.output) / "cache")
        return self

    def check(self) -> "TrainConfig":
        if self.kind not in KINDS:
            raise MfsError(f"config: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "student" and not self.data and not self.prebuilt_cache:
            raise MfsError("config: data must name at least one folder of face photos or videos")
        if self.kind == "quality" and not self.snapshots:
            raise MfsError("config: kind = \"quality\" needs snapshots = FOLDER (written by a teacher run's snapshot_every)")
        for folder in self.data if not self.prebuilt_cache else ():  # a prebuilt cache needs no photos
            if not Path(folder).is_dir():
                raise MfsError(f"config: data folder not found: {folder}")
        if self.prebuilt_cache and not (Path(self.cache) / "index.json").is_file():
            raise MfsError(f"config: prebuilt_cache = true but {self.cache} holds no index.json (unpack a "
                           f"`mfs-fast train --pack-cache` file there first)")
        if self.max_minutes < 0:
            raise MfsError("config: max_minutes must be >= 0 (0: no time limit)")
        if self.steps < 1 or self.sources_per_step < 1 or self.targets_per_source < 1:
            raise MfsError("config: steps, sources_per_step and targets_per_source must be >= 1")
        if not 0 <= self.same_image_share + self.same_identity_share <= 1:
            raise MfsError("config: same_image_share + same_identity_share must lie in [0, 1]")
        if self.teacher and self.teacher.get("kind") not in TEACHERS:
            raise MfsError(f"config: teacher.kind must be one of {', '.join(TEACHERS.names())}, "
                           f"got {self.teacher.get('kind')!r}")
        if self.prefetch not in PREFETCH_SETTINGS:
            raise MfsError(f"config: prefetch must be one of {', '.join(PREFETCH_SETTINGS)}, got {self.prefetch!r}")
        if self.teacher_partners < 0:
            raise MfsError("config: teacher_partners must be >= 0 (0: the teacher swaps every pair anew)")
        if self.max_pixel_upscale < 0 or not 0 <= self.sharp_target_share <= 1 or not 0 <= self.sharp_source_share <= 1:
            raise MfsError("config: max_pixel_upscale must be >= 0, sharp_target_share and sharp_source_share within [0, 1]")
        if self.second_identity and self.second_identity not in SECOND_IDENTITY_NETS:
            raise MfsError(f"config: second_identity must be one of {', '.join(SECOND_IDENTITY_NETS)}, "
                           f"got {self.second_identity!r}")
        if self.detail_sigma <= 0 or self.keep_target_detail < 0:
            raise MfsError("config: detail_sigma must be > 0 and keep_target_detail >= 0")
        if not (0 <= self.paste_chroma <= 1 and 0 <= self.paste_brightness <= 1):
            raise MfsError("config: paste_chroma and paste_brightness must be within [0, 1]")
        if self.paste_eyes not in EYES:
            raise MfsError(f"config: paste_eyes must be one of {', '.join(EYES)}, got {self.paste_eyes!r}")
        if self.colour_sigma <= 0 or self.colour_lightness < 0 or self.colour_margin < 0:
            raise MfsError("config: colour_sigma must be > 0, colour_lightness and colour_margin >= 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise MfsError(f"config: lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_layer(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One TOML file's keys over those of its ``base`` (recursively), with every path made
    absolute relative to the file that names it, so a stage-2 config can live anywhere."""
    path = path.resolve()
    if path in chain:
        raise MfsError(f"config: base chain loops back to {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        what = "base config" if chain else "config file"
        raise MfsError(f"{what} not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise MfsError(f"{path} is not valid TOML: {e}") from None
    known = {f.name for f in fields(TrainConfig)} | {"base"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise MfsError(f"{path}: unknown config keys {', '.join(unknown)}")
    _check_types(raw, path)
    base = raw.pop("base", "")
    relative = set(raw) & set(RELATIVE_FIELDS)
    local = TrainConfig(**{k: raw[k] for k in relative}).resolve(path.parent)
    raw.update({name: getattr(local, name) for name in relative})
    if not base:
        return raw
    merged = _read_layer(path.parent / base, chain + (path,))
    merged.update(raw)
    return merged


KIND_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", list: "a list",
              dict: "a table"}


def _check_types(raw: dict[str, Any], path: Path) -> None:
    """Every key's value of its field's kind: a quoted "false" or "1000" would otherwise pass as
    true, or fail deep inside a training run."""
    kinds = {f.name: type(f.default if f.default is not MISSING else f.default_factory()) for f in fields(TrainConfig)}
    kinds["base"] = str
    for key, value in raw.items():
        kind = kinds[key]
        accepted = (int, float) if kind is float else (kind,)
        if not isinstance(value, accepted) or (isinstance(value, bool) and kind is not bool):
            raise MfsError(f"{path}: {key} must be {KIND_NAMES[kind]}, got {value!r}")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a TOML config (unknown keys are an error; ``base = "other.toml"`` inherits that
    file's keys, this file's win), apply ``overrides``, resolve paths."""
    path = Path(path)
    raw = _read_layer(path)
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return TrainConfig(**raw).resolve(path.parent).check()
