"""A training cache packed small enough to travel, and unpacked into an ordinary cache there.

Why: a lent GPU machine receives one copy of the repository plus carried files, 64 MiB a call in
all, and cannot reach the photos the cache was built from (nor rebuild it: no detector weights,
no data). The cache of faces_v1 + faces_v2_hr is 72 MB; the repository alone is ~35 MB.

What a pack keeps, and what it gives up (``pack_cache``):

- ``index.json`` as it was (same key, same entries; crop and mask offsets are rewritten when
  unpacking, and ``packed`` records what follows);
- crops re-encoded (WebP by default: ~30 % smaller than JPEG at the same PSNR) at one quality,
  the highest that keeps the pack within ``max_bytes``; crops that can never be pixel targets
  (upscaled more than ``pixel_upscale``: identity-only, already soft) at half resolution,
  scaled back to the crop size when unpacking;
- mesh points as int16 offsets from their mean mesh in 1/32 px (at most 1/64 px off; smaller than
  float16 and, stored as low and high byte planes, they deflate to ~60 % of it), only for crops
  within ``pixel_upscale``: the teacher only ever sees those (cross pairs whose target and source
  are both pixel targets). The others get their mean, so the mean mesh the teacher triangulates
  stays the same, and the unpacked index says so: ``FaceCache`` refuses a ``max_pixel_upscale``
  above the pack's or of 0;
- face masks as the integer convex hull they are drawn from (``hull_mask``), checked to give the
  same mask face by face at packing; a face whose hull does not keeps its PNG.

``pixel_upscale = 0`` keeps every crop at full resolution and every mesh point.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..atomic import PendingFile
from ..errors import MfsError

PACK_FORMAT = "mfs_fast.cache_pack"
PACK_VERSION = 1
CODECS = {"webp": (".webp", cv2.IMWRITE_WEBP_QUALITY), "jpeg": (".jpg", cv2.IMWRITE_JPEG_QUALITY)}
SOFT_SCALE = 0.5  # identity-only crops are stored at this fraction of the crop size
UNPACKED_JPEG_QUALITY = 95  # soft crops scaled back up are stored as the cache builder stores crops
QUALITY_RANGE = (30, 95)
ZIP_SLACK = 8 << 10  # zip headers and directory (~150 bytes a member), with room to spare
POINT_STEPS = 32  # mesh points stored in 1/32 px


@dataclass
class PackReport:
    """What :func:`pack_cache` wrote: for the log and the model card."""

    path: Path
    bytes: int
    faces: int
    soft_faces: int
    codec: str
    quality: int
    hull_masks: int  # masks stored as their hull (the rest as PNG)
    max_point_error: float  # px, over the points kept


def _encode(image: np.ndarray, codec: str, quality: int) -> bytes:
    suffix, flag = CODECS[codec]
    ok, data = cv2.imencode(suffix, image, [flag, int(quality)])
    if not ok:
        raise MfsError(f"could not encode a crop as {codec}")
    return data.tobytes()


def _decode(data: bytes | np.ndarray, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise MfsError("a cached image could not be decoded")
    return image


def _hull(points: np.ndarray) -> np.ndarray:
    """The int32 convex hull ``hull_mask`` fills for these points."""
    return cv2.convexHull(points.astype(np.int32)).reshape(-1, 2)


def _hull_mask(hull: np.ndarray, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull.reshape(-1, 1, 2).astype(np.int32), 255)
    return mask


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def quantize_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reference mesh float32, uint8 planes 2 x N x P x 2): the int16 offsets from the mean mesh
    in 1/POINT_STEPS px, low bytes then high bytes (each plane deflates far better alone)."""
    reference = points.mean(axis=0).astype(np.float32)
    steps = np.round((points - reference) * POINT_STEPS)
    if len(steps) and np.abs(steps).max() > np.iinfo(np.int16).max:
        raise MfsError("cache pack: a mesh lies over 1,000 px from the mean mesh: not a crop's mesh")
    planes = steps.astype("<i2").view(np.uint8).reshape(*steps.shape, 2)
    return reference, np.ascontiguousarray(np.moveaxis(planes, -1, 0))


def dequantize_points(reference: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize_points` (float32)."""
    steps = np.ascontiguousarray(np.moveaxis(planes, 0, -1)).view("<i2")[..., 0]
    return steps.astype(np.float32) / POINT_STEPS + reference


def _deflated_size(data: bytes) -> int:
    import zlib

    return len(zlib.compress(data, 6))


def _source_crops(folder: Path, entries: list[dict], soft: np.ndarray, size: int) -> list[np.ndarray]:
    """Every crop decoded, soft ones already at their stored (half) size."""
    crops = np.fromfile(folder / "crops.bin", np.uint8)
    small = max(1, round(size * SOFT_SCALE))
    out = []
    for entry, is_soft in zip(entries, soft):
        start, length = entry["crop"]
        image = _decode(crops[start:start + length])
        out.append(cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA) if is_soft else image)
    return out


def _encode_all(images: list[np.ndarray], codec: str, quality: int, workers: int) -> list[bytes]:
    if workers <= 1:
        return [_encode(image, codec, quality) for image in images]
    with ThreadPoolExecutor(workers) as pool:  # OpenCV's codecs release the GIL
        return list(pool.map(lambda image: _encode(image, codec, quality), images))


def _fit_quality(images: list[np.ndarray], codec: str, budget: int, workers: int, seed: int = 0) -> int:
    """The highest quality whose crops take at most ``budget`` bytes, estimated on a sample
    (binary search), then checked on every crop and stepped down until it fits."""
    rng = np.random.default_rng(seed)
    sample = [images[i] for i in rng.permutation(len(images))[:min(len(images), 300)]]
    share = len(images) / len(sample)
    low, high = QUALITY_RANGE
    while low < high:
        middle = (low + high + 1) // 2
        if sum(map(len, _encode_all(sample, codec, middle, workers))) * share <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def pack_cache(source: str | Path, destination: str | Path, max_bytes: int, pixel_upscale: float = 0.0,
               codec: str = "webp", quality: int | None = None, workers: int = 1) -> PackReport:
    """Write ``destination`` (one zip file) from the cache folder ``source``, at most
    ``max_bytes`` long; ``quality`` fixed instead of fitted when given."""
    source, destination = Path(source), Path(destination)
    if codec not in CODECS:
        raise MfsError(f"cache pack: codec must be one of {', '.join(CODECS)}, got {codec!r}")
    try:
        index_bytes = (source / "index.json").read_bytes()
        index = json.loads(index_bytes)
        entries, size = index["entries"], int(index["size"])
        points = np.load(source / "points.npy")
        masks = np.fromfile(source / "masks.bin", np.uint8)
    except (OSError, ValueError, KeyError) as e:
        raise MfsError(f"cache pack: {source} is not a training cache ({e})") from None
    if len(points) != len(entries):
        raise MfsError(f"cache pack: {source} has {len(entries)} entries but {len(points)} meshes")
    upscale = np.array([entry.get("upscale", 1.0) for entry in entries])
    soft = upscale > pixel_upscale if pixel_upscale > 0 else np.zeros(len(entries), bool)
    reference, planes = quantize_points(points[~soft])
    restored = dequantize_points(reference, planes)
    max_error = float(np.abs(restored.astype(np.float64) - points[~soft]).max()) if len(restored) else 0.0
    soft_mean = points[soft].mean(axis=0).astype(np.float32) if soft.any() else np.zeros((0, 2), np.float32)

    hulls, hull_lengths, pngs, png_lengths = [], [], bytearray(), []
    for entry, mesh in zip(entries, points):
        start, length = entry["mask"]
        png = masks[start:start + length]
        hull = _hull(mesh)
        if np.array_equal(_hull_mask(hull, size), _decode(png, cv2.IMREAD_GRAYSCALE)):
            hulls.append(hull.astype(np.int16))
            hull_lengths.append(len(hull))
            png_lengths.append(0)
        else:  # drawn from other points than the stored ones (e.g. before float32 rounding)
            hull_lengths.append(0)
            png_lengths.append(length)
            pngs += png.tobytes()
    members = {
        "index.json": index_bytes,
        "soft.npy": _npy(soft),
        "points.npy": _npy(planes),
        "mesh_reference.npy": _npy(reference),
        "soft_mean_points.npy": _npy(soft_mean),
        "hulls.npy": _npy(np.concatenate(hulls) if hulls else np.zeros((0, 2), np.int16)),
        "hull_lengths.npy": _npy(np.array(hull_lengths, np.int32)),
        "masks.bin": bytes(pngs),
        "mask_lengths.npy": _npy(np.array(png_lengths, np.int32)),
    }
    fixed = sum(_deflated_size(data) for data in members.values()) + ZIP_SLACK
    images = _source_crops(source, entries, soft, size)
    fitted = quality is None
    if fitted:
        budget = max_bytes - fixed - 4 * len(entries) - 1024  # crop lengths and pack.json
        if budget <= 0:
            raise MfsError(f"cache pack: {max_bytes} bytes do not even hold the index, meshes and masks "
                           f"({fixed} bytes)")
        quality = _fit_quality(images, codec, budget, workers)
    fits = lambda crops: fixed + sum(map(len, crops)) + 4 * len(entries) + 1024 <= max_bytes  # noqa: E731
    encoded = _encode_all(images, codec, quality, workers)
    while not fits(encoded):  # the sample's estimate was high for the whole set: step down
        if quality <= QUALITY_RANGE[0]:
            raise MfsError(f"cache pack: even quality {quality} takes {fixed + sum(map(len, encoded))} bytes, "
                           f"over {max_bytes}")
        quality -= 1
        encoded = _encode_all(images, codec, quality, workers)
    for _ in range(3 if fitted else 0):  # ... or low: step up while the whole set fits
        higher = _encode_all(images, codec, quality + 1, workers) if quality < QUALITY_RANGE[1] else None
        if higher is None or not fits(higher):
            break
        quality, encoded = quality + 1, higher
    members["crop_lengths.npy"] = _npy(np.array([len(data) for data in encoded], np.int32))
    info = {"format": PACK_FORMAT, "version": PACK_VERSION, "size": size, "codec": codec, "quality": quality,
            "soft_scale": SOFT_SCALE, "mesh_upscale_limit": float(pixel_upscale), "faces": len(entries),
            "soft_faces": int(soft.sum()), "source_key": index.get("key"), "max_point_error_px": max_error}
    with PendingFile(destination) as pending:
        with zipfile.ZipFile(pending.path, "w") as pack:
            pack.writestr("pack.json", json.dumps(info, indent=1), zipfile.ZIP_DEFLATED)
            for name, data in members.items():
                pack.writestr(name, data, zipfile.ZIP_DEFLATED)
            pack.writestr("crops.bin", b"".join(encoded), zipfile.ZIP_STORED)  # already compressed
        pending.commit()
    written = destination.stat().st_size
    if written > max_bytes:
        destination.unlink()
        raise MfsError(f"cache pack: came out at {written} bytes, over {max_bytes} (the estimate of the "
                       f"compressed index and meshes was short)")
    return PackReport(destination, written, len(entries), int(soft.sum()), codec, quality,
                      sum(1 for n in hull_lengths if n), max_error)


def _split(blob: bytes, lengths: np.ndarray) -> list[bytes]:
    ends = np.cumsum(lengths)
    return [blob[end - length:end] for end, length in zip(ends.tolist(), lengths.tolist())]


def unpack_cache(pack_path: str | Path, folder: str | Path, workers: int = 0) -> Path:
    """An ordinary cache folder (``index.json``, ``crops.bin``, ``masks.bin``, ``points.npy``)
    from a pack; ``index.json`` gains ``packed`` (see the module docstring)."""
    pack_path, folder = Path(pack_path), Path(folder)
    workers = workers or os.cpu_count() or 1
    try:
        with zipfile.ZipFile(pack_path) as pack:
            info = json.loads(pack.read("pack.json"))
            if info.get("format") != PACK_FORMAT or info.get("version") != PACK_VERSION:
                raise MfsError(f"{pack_path} is not a v{PACK_VERSION} {PACK_FORMAT} file")
            member = {name: pack.read(name) for name in pack.namelist()}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise MfsError(f"cannot read the cache pack {pack_path} ({e})") from None

    def array(name: str) -> np.ndarray:
        return np.load(io.BytesIO(member[name]), allow_pickle=False)

    index = json.loads(member["index.json"])
    entries, size = index["entries"], int(info["size"])
    soft = array("soft.npy")
    crops = _split(member["crops.bin"], array("crop_lengths.npy"))

    def restore(i: int) -> bytes:  # soft crops back to the crop size, as the cache builder stores crops
        if not soft[i]:
            return crops[i]
        image = cv2.resize(_decode(crops[i]), (size, size), interpolation=cv2.INTER_CUBIC)
        return _encode(image, "jpeg", UNPACKED_JPEG_QUALITY)

    with ThreadPoolExecutor(workers) as pool:
        crops = list(pool.map(restore, range(len(entries))))
    kept, soft_mean = dequantize_points(array("mesh_reference.npy"), array("points.npy")), array("soft_mean_points.npy")
    points = np.empty((len(entries), *(kept.shape[1:] if len(kept) else soft_mean.shape)), np.float32)
    points[~soft] = kept
    if soft.any():
        points[soft] = soft_mean
    hull_points, hull_lengths = array("hulls.npy"), array("hull_lengths.npy")
    pngs = _split(member["masks.bin"], array("mask_lengths.npy"))
    masks, hull_start = [], 0
    for i, length in enumerate(hull_lengths.tolist()):
        if length:
            hull = hull_points[hull_start:hull_start + length]
            hull_start += length
            masks.append(cv2.imencode(".png", _hull_mask(hull, size))[1].tobytes())
        else:
            masks.append(pngs[i])
    crop_at = mask_at = 0
    for entry, crop, mask in zip(entries, crops, masks):
        entry["crop"], entry["mask"] = [crop_at, len(crop)], [mask_at, len(mask)]
        crop_at, mask_at = crop_at + len(crop), mask_at + len(mask)
    index["packed"] = {k: info[k] for k in ("codec", "quality", "soft_scale", "mesh_upscale_limit", "soft_faces",
                                            "max_point_error_px")} | {"pack": pack_path.name}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.json").unlink(missing_ok=True)  # a half-unpacked folder never looks complete
    for name, data in (("crops.bin", b"".join(crops)), ("masks.bin", b"".join(masks)), ("points.npy", _npy(points)),
                       ("index.json", json.dumps(index).encode())):
        with PendingFile(folder / name) as pending:
            pending.path.write_bytes(data)
            pending.commit()
    return folder


def main(argv: list[str] | None = None) -> int:
    """``python -m mfs_fast.train.cache_pack unpack PACK FOLDER`` (what scripts/gpu-train.sh runs
    on the GPU machine; packing is ``mfs-fast train --pack-cache``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mfs_fast.train.cache_pack")
    parser.add_argument("action", choices=("unpack",))
    parser.add_argument("pack")
    parser.add_argument("folder")
    args = parser.parse_args(argv)
    try:
        print(f"unpacked {args.pack} into {unpack_cache(args.pack, args.folder)}")
    except MfsError as e:
        print(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
