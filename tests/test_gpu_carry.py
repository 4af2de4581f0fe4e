"""What a lent GPU run carries and how it ends: the packed cache (meshes within 0.1 px, masks
exact, crops fitted to a byte budget), the dlib model at half size, a prebuilt cache used
without the photos, and the wall-clock limit that still checkpoints and exports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import _astronaut_bgr
from mfs_fast.errors import MfsError
from mfs_fast.face.mesh_warp import hull_mask
from mfs_fast.train.cache_pack import dequantize_points, pack_cache, quantize_points, unpack_cache
from mfs_fast.train.data import FaceCache, load_prebuilt_cache

ROOT = Path(__file__).resolve().parents[1]
SIZE = 224
FACES = 8


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A cache folder as build_cache writes it: 8 crops of the astronaut, a face-like mesh each
    (points outside the crop too, as real meshes have), half of them upscaled (identity-only)."""
    folder = tmp_path_factory.mktemp("cache")
    rng = np.random.default_rng(0)
    image = _astronaut_bgr()
    angles = np.linspace(0, 2 * np.pi, 468, endpoint=False)
    entries, crops, masks, points = [], bytearray(), bytearray(), []
    for i in range(FACES):
        x, y = 40 + 20 * i, 10 + 5 * i
        crop = cv2.resize(image[y:y + 300, x:x + 300], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        radius = 70 + 60 * rng.random(468)
        mesh = np.stack([112 + radius * np.cos(angles), 120 + 1.2 * radius * np.sin(angles)], 1)
        mesh = (mesh + rng.normal(0, 0.3, mesh.shape)).astype(np.float32)  # reaches -32 .. 264 px
        jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        png = cv2.imencode(".png", hull_mask(mesh, SIZE))[1].tobytes()
        entries.append({"file": f"/data/{i}.jpg", "frame": 0, "identity": f"p{i % 3}", "upscale": 1.0 + i % 2,
                        "crop": [len(crops), len(jpeg)], "mask": [len(masks), len(png)]})
        crops += jpeg
        masks += png
        points.append(mesh)
    (folder / "crops.bin").write_bytes(bytes(crops))
    (folder / "masks.bin").write_bytes(bytes(masks))
    np.save(folder / "points.npy", np.stack(points))
    (folder / "index.json").write_text(json.dumps({"key": "abc123", "size": SIZE, "entries": entries}))
    return folder


def test_mesh_points_are_kept_within_a_tenth_of_a_pixel():
    rng = np.random.default_rng(1)
    points = rng.uniform(-40, 280, size=(50, 468, 2)).astype(np.float32)  # crop coordinates and beyond
    reference, planes = quantize_points(points)
    assert planes.dtype == np.uint8 and planes.nbytes == points.size * 2  # half of float32
    error = np.abs(dequantize_points(reference, planes) - points).max()
    assert error < 0.1 and error <= 1 / 64 + 1e-4


def test_pack_and_unpack_keep_index_masks_and_meshes(tmp_path, cache):
    report = pack_cache(cache, tmp_path / "c.pack", max_bytes=10**6, pixel_upscale=1.5)
    assert report.faces == FACES and report.soft_faces == FACES // 2 and report.hull_masks == FACES
    assert report.max_point_error < 0.1
    folder = unpack_cache(report.path, tmp_path / "unpacked", workers=2)
    before, after = json.loads((cache / "index.json").read_text()), json.loads((folder / "index.json").read_text())
    assert after["key"] == before["key"] and after["size"] == SIZE
    assert [{k: v for k, v in e.items() if k not in ("crop", "mask")} for e in after["entries"]] == \
           [{k: v for k, v in e.items() if k not in ("crop", "mask")} for e in before["entries"]]
    assert after["packed"]["mesh_upscale_limit"] == 1.5 and after["packed"]["codec"] == "webp"
    original = FaceCache(load_prebuilt_cache(cache), SIZE, max_pixel_upscale=1.5)
    unpacked = FaceCache(load_prebuilt_cache(folder), SIZE, max_pixel_upscale=1.5)
    sharp = original.sharp
    assert sharp.sum() == FACES // 2
    assert np.abs(unpacked.points[sharp] - original.points[sharp]).max() < 0.1
    # identity-only crops get the mean of their meshes: the mean mesh (the teacher's triangulation) stays
    assert np.abs(unpacked.mean_points() - original.mean_points()).max() < 0.1
    for i in range(FACES):
        crop_a, mask_a = original.raw(i)
        crop_b, mask_b = unpacked.raw(i)
        assert np.array_equal(mask_a, mask_b)  # masks exact (from the hull they were drawn from)
        assert crop_b.shape == crop_a.shape and cv2.PSNR(crop_a, crop_b) > 28  # half size for the soft ones


def test_pack_fits_its_byte_budget_by_quality(tmp_path, cache):
    big = pack_cache(cache, tmp_path / "big.pack", max_bytes=10**6)
    budget = big.bytes - 30_000
    small = pack_cache(cache, tmp_path / "small.pack", max_bytes=budget)
    assert small.bytes <= budget < big.bytes and small.quality < big.quality
    assert zipfile.ZipFile(small.path).getinfo("crops.bin").compress_type == zipfile.ZIP_STORED
    with pytest.raises(MfsError, match="do not even hold the index"):
        pack_cache(cache, tmp_path / "none.pack", max_bytes=1000)


def test_packed_cache_refuses_pixel_targets_without_meshes(tmp_path, cache):
    folder = unpack_cache(pack_cache(cache, tmp_path / "c.pack", 10**6, pixel_upscale=1.5).path, tmp_path / "u")
    for limit in (0.0, 2.0):
        with pytest.raises(MfsError, match=r"mesh points only for crops upscaled at most 1.5x"):
            FaceCache(load_prebuilt_cache(folder), SIZE, max_pixel_upscale=limit)
    with pytest.raises(MfsError, match="prebuilt cache .* no readable index.json"):
        load_prebuilt_cache(tmp_path / "absent")


def test_dlib_pack_halves_the_file_and_rebuilds_it(tmp_path):
    from mfs_fast.identity.dlib_format import read_dlib_net
    from mfs_fast.identity.model_files import dlib_model_path
    from mfs_fast.train.dlib_pack import pack_dlib_model, unpack_dlib_model

    source = dlib_model_path()
    pack = pack_dlib_model(source, tmp_path / "dlib.pack")
    assert pack.stat().st_size < 0.51 * source.stat().st_size
    rebuilt = unpack_dlib_model(pack, tmp_path / "dlib.dat")
    assert rebuilt.stat().st_size == source.stat().st_size
    a, b = read_dlib_net(source), read_dlib_net(rebuilt)
    assert [layer.tag for layer in a.layers] == [layer.tag for layer in b.layers] and a.input_mean == b.input_mean
    for la, lb in zip(a.layers, b.layers):
        assert la.ints == lb.ints
        for x, y in zip(la.arrays, lb.arrays):
            expected = x.astype(np.float16).astype(np.float32) if la.tag in ("con_4", "fc_2") else x
            assert np.array_equal(y, expected)  # conv/fc rounded to fp16 as autocast does; affine exact


def test_prebuilt_cache_trains_without_photos_and_stops_on_time(tmp_path):
    """A packed and unpacked cache of real faces trains with the data folders gone; the time limit
    ends the run after its first step, which is checkpointed and exported as at the last step."""
    from test_train import _write_config
    from mfs_fast.checkpoints import load_weights
    from mfs_fast.train import StudentTrainer, load_config
    from mfs_fast.train.data import build_cache

    photos = tmp_path / "photos"
    photos.mkdir()
    image = _astronaut_bgr()
    for name, picture in {"a.jpg": image, "b.jpg": cv2.flip(image, 1)}.items():
        cv2.imwrite(str(photos / name), picture)
    build_cache([str(photos)], tmp_path / "built")
    unpack_cache(pack_cache(tmp_path / "built", tmp_path / "c.pack", 10**6).path, tmp_path / "cache")
    path = _write_config(tmp_path, data=[tmp_path / "gone"], cache=str(tmp_path / "cache"), prebuilt_cache=True,
                         steps=50, max_minutes=1e-4, sample_every=0, checkpoint_every=0, export_storage="int8")
    with pytest.raises(MfsError, match="data folder not found"):
        load_config(path, {"prebuilt_cache": False})
    config = load_config(path)
    started = time.perf_counter()
    weights = StudentTrainer(config).run(progress=False)
    assert time.perf_counter() - started < 600
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 1  # stopped by the clock, logged although log_every is not reached
    manifest = json.loads((weights / "manifest.json").read_text())
    assert manifest["provenance"]["steps"] == 1 and manifest["storage"] == "int8"
    load_weights(weights)
    assert (tmp_path / "out" / "checkpoint.pt").is_file()


def test_config_checks_max_minutes_and_the_prebuilt_cache(tmp_path):
    from test_train import _write_config
    from mfs_fast.train import load_config

    path = _write_config(tmp_path, data=[tmp_path], max_minutes=-1)
    with pytest.raises(MfsError, match="max_minutes must be >= 0"):
        load_config(path)
    path = _write_config(tmp_path, data=[], cache=str(tmp_path / "nothing"), prebuilt_cache=True)
    with pytest.raises(MfsError, match="prebuilt_cache = true but .* holds no index.json"):
        load_config(path)


def test_cli_packs_a_cache(tmp_path, cache):
    done = subprocess.run([sys.executable, "-m", "mfs_fast", "train", "--pack-cache", str(cache),
                           str(tmp_path / "c.pack"), "--pack-max-mb", "1", "--pack-pixel-upscale", "1.5"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "packed 8 faces (4 identity-only" in done.stdout and (tmp_path / "c.pack").stat().st_size <= 10**6
    done = subprocess.run([sys.executable, "-m", "mfs_fast.train.cache_pack", "unpack", str(tmp_path / "c.pack"),
                           str(tmp_path / "u")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and (tmp_path / "u" / "index.json").is_file()


def test_gpu_config_is_the_stage5_recipe_on_cuda_with_an_8x_batch(tmp_path):
    from mfs_fast.train import load_config

    (tmp_path / "index.json").write_text("{}")  # stands for the unpacked cache: the photos need not exist
    gpu = load_config(ROOT / "configs" / "starter-gpu.toml", {"cache": str(tmp_path)})
    assert gpu.device == "cuda" and gpu.prebuilt_cache and gpu.max_minutes == 9 and gpu.export_storage == "int8"
    assert (gpu.sources_per_step, gpu.targets_per_source) == (16, 4)
    assert gpu.init_weights == str(ROOT / "mfs_fast" / "weights" / "starter")  # travels inside the repository
    assert gpu.output == str(ROOT / "runs" / "starter-gpu")
    assert gpu.second_identity == "faceres" and gpu.distill_lowpass and gpu.max_pixel_upscale == 1.3


def test_gpu_script_states_its_call_and_carries_an_ignored_folder():
    script = (ROOT / "scripts" / "gpu-train.sh").read_text()
    assert 'run(command="bash scripts/gpu-train.sh", carry=[".gpu"], timeout_s=600)' in script
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu-train.sh")]).returncode == 0
    ignored = subprocess.run(["git", "check-ignore", "-q", ".gpu/cache.pack"], cwd=ROOT)
    assert ignored.returncode == 0  # carried paths must be ignored ones
