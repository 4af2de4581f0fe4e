"""Per-stage cost of swapping one face in a 1280x720 frame (pytest-benchmark)."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from mfs_fast import Swapper
from mfs_fast.face import align_face, paste_back
from mfs_fast.face.detectors import create_detector
from mfs_fast.models import FaceSwapModels
from mfs_fast.preprocess import batch_item_to_bgr255, crops_to_batch, rgb_to_bgr


@pytest.fixture(scope="module")
def frame_720p():
    face = rgb_to_bgr(skimage.data.astronaut())
    frame = np.full((720, 1280, 3), 40, np.uint8)
    frame[104:616, 384:896] = face
    return frame


@pytest.fixture(scope="module")
def swapper(frame_720p):
    return Swapper(frame_720p, FaceSwapModels.random(), detector=create_detector("blazeface"))


@pytest.fixture(scope="module")
def face(swapper, frame_720p):
    (found,) = swapper.detector.detect(frame_720p)
    return found


def test_stage_detect(benchmark, swapper, frame_720p, threads):
    benchmark.group = f"720p stages, {threads} thread(s)"
    benchmark(swapper.detector.detect, frame_720p)


def test_stage_align(benchmark, face, frame_720p, threads):
    benchmark.group = f"720p stages, {threads} thread(s)"
    benchmark(align_face, frame_720p, face.landmarks, 224)


def test_stage_idn(benchmark, swapper, face, frame_720p, threads):
    batch = crops_to_batch([align_face(frame_720p, face.landmarks, 224).crop])
    benchmark.group = f"720p stages, {threads} thread(s)"
    benchmark(swapper.backend.run, batch)


def test_stage_paste(benchmark, swapper, face, frame_720p, threads):
    aligned = align_face(frame_720p, face.landmarks, 224)
    result, mask = swapper.backend.run(crops_to_batch([aligned.crop]))
    bgr = batch_item_to_bgr255(result[0])
    out = frame_720p.copy()
    benchmark.group = f"720p stages, {threads} thread(s)"
    benchmark(paste_back, frame_720p, bgr, mask[0, 0], aligned.inverse, out)


def test_end_to_end_swap(benchmark, swapper, frame_720p, threads):
    out = frame_720p.copy()
    benchmark.group = f"720p end to end, {threads} thread(s)"
    benchmark(swapper.swap, frame_720p, out)


def test_set_source(benchmark, swapper, frame_720p):
    """Identity change: detection + identity net + IIN, no rebuild."""
    benchmark.group = "identity change"
    benchmark.pedantic(swapper.set_source, args=(frame_720p,), rounds=5, iterations=1)


@pytest.fixture(scope="module")
def frame_720p_six_faces():
    """The six-person group photo of the shared assets, resized to 1280x720."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "assets" / "images" / "group_6faces.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not found (shared test assets are only in the full checkout)")
    return cv2.resize(cv2.imread(str(path)), (1280, 720), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("path", ["python", "core"])
@pytest.mark.parametrize("count", [1, 6], ids=lambda n: f"{n}face")
def test_after_detection_python_vs_core(benchmark, frame_720p, frame_720p_six_faces, threads, count, path):
    """Everything after detection for one 720p frame (align, IDN, paste into a new frame), on the
    fused backend: the Python path (cv2 warp, NumPy/OpenCV paste) vs the C++ pipeline core."""
    from mfs_fast.backends.fused import FusedIDN

    frame = frame_720p if count == 1 else frame_720p_six_faces
    models = FaceSwapModels.random(seed=0)
    detector = create_detector("blazeface")
    faces = detector.detect(frame)
    assert len(faces) == count, f"expected {count} faces, found {len(faces)}"
    cv2.setNumThreads(threads)
    swapper = Swapper(frame, models, backend=FusedIDN(models, threads=threads), detector=detector,
                      core=path == "core")
    benchmark.group = f"720p after detection, {count} face(s), {threads} thread(s)"
    benchmark(swapper._swap_faces, [frame], [faces], [None])
