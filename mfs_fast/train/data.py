"""Training data: face photos and clips -> a cache of aligned crops -> augmented (source, target) pairs.

The cache is built once per data set (detection, alignment, face-hull masks are the slow
part) and holds JPEG-encoded 224 crops, PNG face masks (the convex hull of the 468-point
mesh, in crop coordinates: what is *not* face is background for the weak mask loss), the mesh
points themselves (for the mesh-warp teacher) and an identity label per crop (the ``identity`` column of a ``manifest.csv`` next to the files when
there is one, else one identity per photo or clip).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..atomic import atomic_path, atomic_write
from ..errors import MfsError
from ..face.mesh_warp import crop_mesh_points, hull_mask
from ..preprocess import bgr_to_chw

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
CACHE_VERSION = 3  # 2: mesh points stored; 3: each crop's upscale factor


def _media_files(folders: list[str]) -> list[Path]:
    files = []
    for folder in folders:
        files += [p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES]
    return sorted(files)


def _manifest_identities(folders: list[str]) -> dict[str, str]:
    """file path -> person, from any ``manifest.csv`` (columns ``file``, ``identity``) at or above a folder."""
    names: dict[str, str] = {}
    for folder in folders:
        for candidate in (Path(folder), *Path(folder).parents[:2]):
            manifest = candidate / "manifest.csv"
            if manifest.is_file():
                with manifest.open(newline="") as f:
                    for row in csv.DictReader(f):
                        if row.get("identity"):
                            names[str((candidate / row["file"]).resolve())] = row["identity"]
                break
    return names


def is_held_out(path: Path, identity: str, holdout: list[str]) -> bool:
    return path.name in holdout or path.stem in holdout or identity in holdout


@dataclass
class CacheInfo:
    folder: Path
    entries: list[dict]
    packed: dict | None = None  # index.json's "packed" (an unpacked --pack-cache copy): what it keeps


def _frames_of(path: Path, stride: int, limit: int):
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path))
        if image is not None:
            yield 0, image
        return
    from ..media import read_frames

    taken = 0
    for index, frame in enumerate(read_frames(path)):
        if index % stride == 0:
            yield index, frame
            taken += 1
            if taken >= limit:
                return


def build_cache(folders: list[str], cache: str | Path, size: int = 224, holdout: list[str] | None = None,
                video_stride: int = 10, video_frames: int = 30, max_faces: int = 0) -> CacheInfo:
    """Detect, align and mask the largest face of every photo (and sampled clip frames), once."""
    from ..face.detectors import create_detector
    from ..face.face_mesh import FaceMesh

    holdout = holdout or []
    files = _media_files(folders)
    if not files:
        raise MfsError(f"no photos or videos found in {', '.join(folders)}")
    key = hashlib.sha256(json.dumps([CACHE_VERSION, size, video_stride, video_frames, max_faces, sorted(holdout),
                                     [str(f) for f in files]]).encode()).hexdigest()[:16]
    folder = Path(cache)
    index_path = folder / "index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("key") == key:
            return CacheInfo(folder, index["entries"], index.get("packed"))
    folder.mkdir(parents=True, exist_ok=True)
    identities = _manifest_identities(folders)
    detector, mesh = create_detector("blazeface"), FaceMesh()
    # one thread: these small graphs gain nothing from more, and on a busy machine OpenMP's
    # spinning threads made detection 10-40x slower (measured: 0.08 s vs 0.6-3.4 s a photo)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        entries, crops, masks, points = _cache_faces(files, holdout, identities, detector, mesh, size, video_stride,
                                             video_frames, max_faces)
    finally:
        torch.set_num_threads(threads)
    if not entries:
        raise MfsError(f"no faces found in the {len(files)} files of {', '.join(folders)}")
    for name, blob in (("crops.bin", crops), ("masks.bin", masks)):
        atomic_write(folder / name, bytes(blob))
    with atomic_path(folder / "points.npy") as path, path.open("wb") as f:
        np.save(f, np.stack(points).astype(np.float32))
    atomic_write(index_path, json.dumps({"key": key, "size": size, "entries": entries}))  # last: marks the cache complete
    return CacheInfo(folder, entries)


def load_prebuilt_cache(cache: str | Path) -> CacheInfo:
    """A cache folder as it is (config ``prebuilt_cache``), for a machine without the photos:
    the key, which lists the data's file paths, is not checked."""
    folder = Path(cache)
    try:
        index = json.loads((folder / "index.json").read_text())
        entries = index["entries"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MfsError(f"prebuilt cache {folder}: no readable index.json with entries ({e})") from None
    missing = [name for name in ("crops.bin", "masks.bin", "points.npy") if not (folder / name).is_file()]
    if missing or not entries:
        raise MfsError(f"prebuilt cache {folder}: {', '.join(missing) or 'no entries'} missing")
    return CacheInfo(folder, entries, index.get("packed"))


def crop_upscale(matrix: np.ndarray) -> float:
    """How many crop pixels one frame pixel became (the affine's area scale, square-rooted):
    above ~1.3 the crop is an interpolated, soft face that must not be a pixel target."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix, np.float64)[:, :2]))))


def _cache_faces(files, holdout, identities, detector, mesh, size, video_stride, video_frames, max_faces):
    from ..face import align_face

    entries, crops, masks, points = [], bytearray(), bytearray(), []
    for path in tqdm(files, desc="caching aligned faces", unit="file"):
        identity = identities.get(str(path.resolve()), path.stem)
        if is_held_out(path, identity, holdout):
            continue
        for frame_index, frame in _frames_of(path, video_stride, video_frames):
            faces = detector.detect(frame)
            if not faces:
                continue
            face = max(faces, key=lambda f: f.area)
            aligned = align_face(frame, face.landmarks, size)
            jpeg = cv2.imencode(".jpg", aligned.crop, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            mesh_points = crop_mesh_points(frame, face, aligned.matrix, mesh)
            png = cv2.imencode(".png", hull_mask(mesh_points, size))[1].tobytes()
            entries.append({"file": str(path), "frame": frame_index, "identity": identity,
                            "upscale": round(crop_upscale(aligned.matrix), 4),
                            "crop": [len(crops), len(jpeg)], "mask": [len(masks), len(png)]})
            crops += jpeg
            masks += png
            points.append(mesh_points)
        if max_faces and len(entries) >= max_faces:
            break
    return entries, crops, masks, points


@dataclass
class Augmentation:
    """One draw of :class:`FaceCache`'s augmentation (small affine, flip, colour jitter), kept so
    that it can be replayed on another image of the same crop: a cached teacher swap of the
    un-augmented pair is given the target's augmentation (:mod:`.teacher_cache`)."""

    matrix: np.ndarray  # 2 x 3 affine, crop pixels -> augmented crop pixels (before the flip)
    flip: bool
    gain: torch.Tensor  # 3 x 1 x 1, per RGB channel
    contrast: float

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int) -> "Augmentation":
        angle, scale = rng.uniform(-5, 5), rng.uniform(0.95, 1.05)
        matrix = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), angle, scale)
        matrix[:, 2] += rng.uniform(-4, 4, size=2)
        flip = bool(rng.random() < 0.5)
        gain = 1 + torch.from_numpy(rng.uniform(-0.1, 0.1, size=(3, 1, 1))).float()
        return cls(matrix, flip, gain, float(rng.uniform(0.9, 1.1)))

    def warp(self, image: np.ndarray, is_mask: bool = False) -> np.ndarray:
        """The affine and flip applied to an H x W (x C) image of the crop: bilinear with
        reflected borders, or for a mask nearest with zero borders."""
        size = image.shape[1], image.shape[0]
        flags, border = (cv2.INTER_NEAREST, cv2.BORDER_CONSTANT) if is_mask else (cv2.INTER_LINEAR, cv2.BORDER_REFLECT)
        warped = cv2.warpAffine(image, self.matrix, size, flags=flags, borderMode=border)
        return warped[:, ::-1] if self.flip else warped

    def move_points(self, points: np.ndarray, size: int) -> np.ndarray:
        moved = points @ self.matrix[:, :2].T + self.matrix[:, 2]
        if self.flip:
            moved[:, 0] = size - 1 - moved[:, 0]
        return moved

    def jitter(self, image: torch.Tensor) -> torch.Tensor:
        """Colour jitter of an RGB 3 x S x S image in [0, 1]: contrast about its mean, then gain."""
        mean = image.mean()
        return (((image - mean) * self.contrast + mean) * self.gain).clamp_(0, 1)


@dataclass
class FaceSample:
    image: torch.Tensor  # RGB 3 x S x S float in [0, 1]
    face_mask: torch.Tensor  # 1 x S x S in {0, 1}
    points: torch.Tensor  # 468 x 2 mesh points, crop coordinates
    augmentation: Augmentation | None = None


class FaceCache:
    """Random access to cached crops (RGB float [0, 1]) and face masks, with augmentation."""

    def __init__(self, info: CacheInfo, size: int = 224, seed: int = 0, max_pixel_upscale: float = 0.0) -> None:
        limit = (info.packed or {}).get("mesh_upscale_limit", 0)
        if limit and not 0 < max_pixel_upscale <= limit:
            # the pack kept mesh points only where they can reach the teacher (pixel targets)
            raise MfsError(f"{info.folder} is a packed cache with mesh points only for crops upscaled at most "
                           f"{limit}x: max_pixel_upscale must lie in (0, {limit}], got {max_pixel_upscale}")
        self.entries = info.entries
        self.crops = np.fromfile(info.folder / "crops.bin", dtype=np.uint8)
        self.masks = np.fromfile(info.folder / "masks.bin", dtype=np.uint8)
        self.points = np.load(info.folder / "points.npy")
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.by_identity: dict[str, list[int]] = {}
        for i, entry in enumerate(self.entries):
            self.by_identity.setdefault(entry["identity"], []).append(i)
        # pixel targets: crops upscaled at most max_pixel_upscale (0: every crop)
        upscale = np.array([entry.get("upscale", 1.0) for entry in self.entries])
        self.sharp = upscale <= max_pixel_upscale if max_pixel_upscale > 0 else np.ones(len(self.entries), bool)
        self.sharp_indices = np.flatnonzero(self.sharp)

    def __len__(self) -> int:
        return len(self.entries)

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(BGR uint8 crop, uint8 face mask) of entry ``i``, no augmentation."""
        entry = self.entries[i]
        start, length = entry["crop"]
        crop = cv2.imdecode(self.crops[start:start + length], cv2.IMREAD_COLOR)
        start, length = entry["mask"]
        mask = cv2.imdecode(self.masks[start:start + length], cv2.IMREAD_GRAYSCALE)
        return crop, mask

    def mean_points(self) -> np.ndarray:
        """The average mesh (468 x 2, crop coordinates): a shape to triangulate once."""
        return self.points.mean(axis=0)

    def sample(self, i: int, augment: bool = True) -> FaceSample:
        """Entry ``i`` with flip, small affine and colour jitter applied to crop, mask and mesh
        points consistently."""
        crop, mask = self.raw(i)
        points = self.points[i].copy()
        augmentation = Augmentation.draw(self.rng, self.size) if augment else None
        if augmentation is not None:
            crop, mask = augmentation.warp(crop), augmentation.warp(mask, is_mask=True)
            points = augmentation.move_points(points, self.size)
        image = bgr_to_chw(crop)
        if augmentation is not None:
            image = augmentation.jitter(image)
        face = torch.from_numpy(np.ascontiguousarray(mask) > 127).float()[None]
        return FaceSample(image, face, torch.from_numpy(points.astype(np.float32)), augmentation)

    def augmented(self, i: int, augment: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(RGB 3 x S x S float in [0, 1], 1 x S x S face mask in {0, 1}) of :meth:`sample`."""
        sample = self.sample(i, augment)
        return sample.image, sample.face_mask


@dataclass
class PairGroup:
    """One source and the targets it is swapped onto in a step."""

    source: torch.Tensor  # 3 x S x S
    targets: torch.Tensor  # M x 3 x S x S
    target_masks: torch.Tensor  # M x 1 x S x S
    reconstruction: torch.Tensor  # M bools: target shows the source's person (same image or same identity)
    pixel_target: torch.Tensor  # M bools: the target (and, for a cross pair, the source) is sharp enough for pixel losses
    source_points: torch.Tensor | None = None  # 468 x 2 mesh points of the source
    target_points: torch.Tensor | None = None  # M x 468 x 2
    indices: tuple[int, ...] = ()  # cache entries of the source, then of each target
    target_augmentations: tuple[Augmentation | None, ...] = ()


class PairSampler:
    """Random (source, targets) groups with a share of same-image / same-identity pairs.

    Sources come from the sharp crops with probability ``sharp_source_share``, else from every
    crop (identity diversity: LFW's many people); other targets come from the sharp crops with
    probability ``sharp_target_share``, and a same-identity target is a sharp crop of the
    person when there is one, so that most pixel losses have a real, sharp face to match.

    With ``partners`` > 0, every sharp target drawn for a sharp source (other than the source's
    own person) is one of that source's ``partners`` sharp crops, fixed by the seed: the
    distilled pairs then form a fixed pool whose teacher swaps are computed once and reused
    (:mod:`.teacher_cache`)."""

    def __init__(self, cache: FaceCache, targets_per_source: int, same_image_share: float,
                 same_identity_share: float, seed: int = 0, sharp_target_share: float = 0.0,
                 sharp_source_share: float = 0.0, partners: int = 0) -> None:
        if len(cache) < 2:
            raise MfsError(f"training needs at least 2 cached faces, the cache has {len(cache)}")
        self.cache, self.m = cache, targets_per_source
        self.same_image, self.same_identity = same_image_share, same_identity_share
        has_sharp = len(cache.sharp_indices) > 0
        self.sharp_target_share = sharp_target_share if has_sharp else 0.0
        self.sharp_source_share = sharp_source_share if has_sharp else 0.0
        self.rng = np.random.default_rng(seed + 1)
        self.partners, self.seed = min(partners, len(cache.sharp_indices)), seed

    def _draw(self, sharp_share: float, source_index: int | None = None) -> int:
        """A crop index: a sharp one with probability ``sharp_share``, else any; with partners,
        any sharp crop drawn for a sharp source is one of its partners instead."""
        if sharp_share > 0 and self.rng.random() < sharp_share:
            index = int(self.rng.choice(self.cache.sharp_indices))
        else:
            index = int(self.rng.integers(len(self.cache)))
        sharp = self.cache.sharp
        if self.partners and source_index is not None and sharp[source_index] and sharp[index]:
            index = int(self.rng.choice(self.partners_of(source_index)))
        return index

    def partners_of(self, source_index: int) -> np.ndarray:
        """The sharp crops a sharp source is paired with: a function of (seed, source) only, so
        the pool is the same in every run and stage with that seed."""
        rng = np.random.default_rng((self.seed, source_index))
        return rng.choice(self.cache.sharp_indices, size=self.partners, replace=False)

    def distilled_pool(self) -> list[tuple[int, int]]:
        """Every (source, target) pair the teacher can be asked for: each sharp source with its
        partners of another person (same-person pairs are reconstructions, never distilled);
        empty without partners."""
        if not self.partners:
            return []
        identity = [entry["identity"] for entry in self.cache.entries]
        return [(int(source), int(target)) for source in self.cache.sharp_indices
                for target in self.partners_of(int(source)) if identity[target] != identity[source]]

    def group(self) -> PairGroup:
        rng = self.rng
        source_index = self._draw(self.sharp_source_share)
        source = self.cache.sample(source_index)
        person = self.cache.by_identity[self.cache.entries[source_index]["identity"]]
        sharp = self.cache.sharp
        targets, recon, pixel, indices = [], [], [], [source_index]
        for _ in range(self.m):
            u = rng.random()
            if u < self.same_image:
                index, is_recon = source_index, True
            elif u < self.same_image + self.same_identity and len(person) > 1:
                others = [p for p in person if p != source_index]
                sharp_others = [p for p in others if sharp[p]]
                index, is_recon = int(rng.choice(sharp_others or others)), True
            else:
                index = self._draw(self.sharp_target_share, source_index)
                is_recon = self.cache.entries[index]["identity"] == self.cache.entries[source_index]["identity"]
            targets.append(self.cache.sample(index))
            recon.append(is_recon)
            indices.append(index)
            # a cross pair's distillation target carries the source's face texture: both must be sharp
            pixel.append(bool(sharp[index] and (is_recon or sharp[source_index])))
        return PairGroup(source.image, torch.stack([t.image for t in targets]), torch.stack([t.face_mask for t in targets]),
                         torch.tensor(recon), torch.tensor(pixel), source.points, torch.stack([t.points for t in targets]),
                         tuple(indices), tuple(t.augmentation for t in targets))
