"""Marking and finding: round trip, what the mark survives, where it goes, and that unmarked
images (real photos, the shared ones when present) are never reported as marked."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import SHARED_ASSETS, _astronaut_bgr
from mfs_fast.watermark import Watermark, detect
from mfs_fast.watermark.detect import MIN_Z
from mfs_fast.watermark.embed import disjoint

FACE_REGION = (110, 0, 370, 260)  # x0, y0, x1, y1: the astronaut's face and its surroundings
IMAGES = SHARED_ASSETS / "images"


@pytest.fixture(scope="module")
def astronaut():
    return _astronaut_bgr()


@pytest.fixture(scope="module")
def marked(astronaut):
    return Watermark(user_id=321).mark(astronaut.copy(), [FACE_REGION])


def jpeg(image, quality=75):
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


def test_round_trip_reads_the_payload(marked):
    found = detect(marked)
    assert found.found and found.z > 2 * MIN_Z and found.false_alarm < 1e-20
    assert str(found.payload) == "mfs_fast 0.1, user id 321"


def test_only_the_region_changes_and_invisibly(astronaut, marked):
    x0, y0, x1, y1 = FACE_REGION
    outside = np.ones(astronaut.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(marked[outside], astronaut[outside])
    change = marked[y0:y1, x0:x1].astype(float) - astronaut[y0:y1, x0:x1]
    assert 10 * np.log10(255 ** 2 / np.mean(change ** 2)) >= 40.0  # PSNR inside the marked region
    same = (change[..., 0] == change[..., 1]) & (change[..., 1] == change[..., 2])
    assert same.mean() > 0.9  # luma only: B, G and R move together (apart from where one clips)


@pytest.mark.parametrize("change", ["jpeg75", "half", "face_crop", "face_crop_jpeg75", "contrast"])
def test_survives(marked, change):
    x0, y0, x1, y1 = FACE_REGION
    attacked = {
        "jpeg75": lambda: jpeg(marked),
        "half": lambda: cv2.resize(marked, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
        "face_crop": lambda: marked[60:200, 170:300],
        "face_crop_jpeg75": lambda: jpeg(marked[60:200, 170:300]),
        "contrast": lambda: cv2.convertScaleAbs(marked, alpha=1.2, beta=-20),
    }[change]()
    assert detect(attacked).found


def test_overlapping_regions_are_marked_once(astronaut):
    twice = Watermark().mark(astronaut.copy(), [(100, 0, 300, 200), (200, 100, 400, 300)])
    once = astronaut.copy()
    for box in disjoint([(100, 0, 300, 200), (200, 100, 400, 300)]):
        Watermark().mark(once, [box])
    np.testing.assert_array_equal(twice, once)
    covered = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in disjoint([(100, 0, 300, 200), (200, 100, 400, 300)]))
    assert covered == 2 * 200 * 200 - 100 * 100


def test_unmarked_images_are_not_reported(astronaut):
    for image in (astronaut, jpeg(astronaut), np.full((300, 400, 3), 255, np.uint8),
                  np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)):
        result = detect(image)
        assert not result.found and result.payload is None and result.z < MIN_Z - 1


@pytest.mark.skipif(not IMAGES.is_dir(), reason=f"shared test images not found at {IMAGES}")
@pytest.mark.parametrize("name", ["obama_1.jpg", "rudd_1.jpg", "group_6faces.jpg", "portrait_s7.jpg"])
def test_never_found_in_shared_originals(name):
    result = detect(cv2.imread(str(IMAGES / name)))
    assert not result.found and result.z < MIN_Z - 1


def test_large_frames_are_marked_the_same_without_the_cache(astronaut, monkeypatch):
    import mfs_fast.watermark.embed as embed

    cached = Watermark().mark(astronaut.copy(), [FACE_REGION, (0, 300, 200, 512)])
    monkeypatch.setattr(embed, "MAX_CACHED_PIXELS", 0)
    np.testing.assert_array_equal(Watermark().mark(astronaut.copy(), [FACE_REGION, (0, 300, 200, 512)]), cached)
