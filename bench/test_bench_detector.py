"""Face detector latency on 1280x720 frames (pytest-benchmark). Run: ./run.sh bench -k detector"""

from pathlib import Path

import cv2
import numpy as np
import pytest

from mfs_fast.face.detectors import BlazeFaceDetector, WholeFrameBlazeFaceDetector
from mfs_fast.preprocess import rgb_to_bgr

SHARED_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "assets" / "images"
FRAME_W, FRAME_H = 1280, 720


def _letterboxed(image: np.ndarray) -> np.ndarray:
    """A 1280x720 frame with the photo centred at its largest size."""
    h, w = image.shape[:2]
    scale = min(FRAME_W / w, FRAME_H / h)
    resized = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    frame = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    y, x = (FRAME_H - resized.shape[0]) // 2, (FRAME_W - resized.shape[1]) // 2
    frame[y:y + resized.shape[0], x:x + resized.shape[1]] = resized
    return frame


@pytest.fixture(scope="module")
def detectors():
    return {"mesh": BlazeFaceDetector(), "no mesh": BlazeFaceDetector(refine_landmarks=False),
            "whole frame (before 2026-12-06)": WholeFrameBlazeFaceDetector()}


@pytest.fixture(scope="module")
def one_face_frame():
    import skimage.data

    return _letterboxed(rgb_to_bgr(skimage.data.astronaut()))


@pytest.fixture(scope="module")
def six_faces_frame():
    path = SHARED_IMAGES / "group_6faces.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not found (shared test assets are only in the full checkout)")
    return cv2.resize(cv2.imread(str(path)), (FRAME_W, FRAME_H), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("variant", ["no mesh", "mesh", "whole frame (before 2026-12-06)"])
def test_detect_one_face(benchmark, detectors, one_face_frame, threads, variant):
    detector = detectors[variant]
    assert len(detector.detect(one_face_frame)) == 1
    benchmark.group = f"detect 1280x720, 1 face, {threads} thread(s)"
    benchmark(detector.detect, one_face_frame)


def test_detect_six_faces(benchmark, detectors, six_faces_frame, threads):
    detector = detectors["mesh"]
    found = len(detector.detect(six_faces_frame))
    benchmark.group = f"detect 1280x720, 6 faces (found {found}), {threads} thread(s)"
    benchmark(detector.detect, six_faces_frame)


@pytest.mark.parametrize("variant", ["mesh", "whole frame (before 2026-12-06)"])
def test_track_one_face(benchmark, detectors, one_face_frame, threads, variant):
    detector = detectors[variant]
    previous = detector.detect(one_face_frame)
    assert len(detector.track(one_face_frame, previous)) == 1
    benchmark.group = f"track 1280x720, 1 face, {threads} thread(s)"
    benchmark(detector.track, one_face_frame, previous)
