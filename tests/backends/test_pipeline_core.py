"""The C++ pipeline core (align -> IDN -> blend in one call) against the pure-Python pipeline.

The Python path is ``align_face`` (cv2.warpAffine) + the fused IDN backend + ``paste_back``
(NumPy/OpenCV mask post-processing, warp back and blend). The core must give the same frame to
within one level on every pixel, write only inside the face boxes, leave its input alone when
``out`` is given, reject bad arrays with ValueError, and release the GIL while it works.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from mfs_fast import MfsError, Swapper, native
from mfs_fast.face import align_face
from mfs_fast.face.align import alignment_matrix, invert_affine, template
from mfs_fast.face.detectors import create_detector
from mfs_fast.face.paste import blend_mask, footprint_box, paste_back

from conftest import SHARED_ASSETS, _astronaut_bgr

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="the C++ extension is not built")

IMAGES = SHARED_ASSETS / "images"
needs_assets = pytest.mark.skipif(not IMAGES.is_dir(), reason=f"shared test images not found at {IMAGES}")
ISAS = ["scalar"] + (["avx2"] if native.AVAILABLE and "avx2" in native.require_native().isas() else [])


@pytest.fixture(scope="module")
def detector():
    return create_detector("blazeface")


@pytest.fixture(scope="module")
def astronaut():
    return _astronaut_bgr()


@pytest.fixture(scope="module", params=[224, 256])
def swapper(request, official_models, detector, astronaut):
    return Swapper(astronaut, official_models, detector=detector, size=request.param)


@pytest.fixture(scope="module")
def swapper224(official_models, detector, astronaut):
    return Swapper(astronaut, official_models, detector=detector)


@pytest.fixture(scope="module")
def landmarks(detector, astronaut):
    (face,) = detector.detect(astronaut)
    return face.landmarks.astype(np.float32)


def python_path(swapper: Swapper, frame: np.ndarray) -> np.ndarray:
    core, swapper.core = swapper.core, None
    try:
        return swapper.swap(frame)
    finally:
        swapper.core = core


def python_reference(swapper: Swapper, frame: np.ndarray, landmarks: np.ndarray, detail: float = 0.0,
                     chroma: float = 1.0, brightness: float = 1.0, eyes: str = "swap") -> np.ndarray:
    """align_face + the backend's IDN + paste_back, face after face (the Python pipeline)."""
    aligned = [align_face(frame, lm, swapper.size) for lm in landmarks]
    batch = np.stack([a.crop for a in aligned])[..., ::-1].astype(np.float32) * np.float32(1.0 / 255.0)
    faces, masks = swapper.backend.run(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
    result = frame.copy()
    for i, a in enumerate(aligned):
        bgr = faces[i].transpose(1, 2, 0)[..., ::-1] * np.float32(255.0)
        paste_back(result, bgr, masks[i, 0], a.inverse, out=result, crop=a.crop, detail=detail, chroma=chroma,
                   brightness=brightness, eyes=eyes)
    return result


def boxes_mask(shape, landmarks, size) -> np.ndarray:
    inside = np.zeros(shape[:2], bool)
    for lm in landmarks:
        box = footprint_box(invert_affine(alignment_matrix(lm, size)), size, shape)
        if box:
            x0, y0, x1, y1 = box
            inside[y0:y1, x0:x1] = True
    return inside


def assert_within_one_level(got: np.ndarray, expected: np.ndarray) -> None:
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, f"max difference {diff.max()} at {np.argwhere(diff > 1)[:5].tolist()}"
    assert (diff > 0).mean() < 1e-3  # off by one only where a float lands next to an integer


# ------------------------------------------------------------------------------ end to end
def test_swapper_uses_the_core_with_the_fused_backend(swapper):
    assert swapper.backend.name == "fused"
    assert swapper.core is not None and swapper.core.size == swapper.size


def test_core_matches_python_pipeline_one_face(swapper, astronaut):
    got = swapper.swap(astronaut)
    expected = python_path(swapper, astronaut)
    assert len(swapper.last_faces) == 1
    assert (expected != astronaut).sum() > 10_000  # the face really was swapped
    assert_within_one_level(got, expected)


def test_core_matches_python_pipeline_several_faces(swapper, astronaut, landmarks):
    """Four tiles plus an overlapping fifth face (pasted over the fourth, in order)."""
    h, w = astronaut.shape[:2]
    frame = np.ascontiguousarray(np.tile(astronaut, (2, 2, 1)))
    shifts = [(0, 0), (w, 0), (0, h), (w, h), (w + 40, h + 25)]
    faces = np.stack([landmarks + np.float32(s) for s in shifts])
    expected = python_reference(swapper, frame, faces)
    got = frame.copy()
    assert swapper.core.swap(got, faces) is not None
    assert_within_one_level(got, expected)
    # with the alignment matrices given instead of landmarks: the same frame
    again = frame.copy()
    swapper.core.swap(again, matrices=np.stack([alignment_matrix(lm, swapper.size) for lm in faces]))
    np.testing.assert_array_equal(again, got)


def test_swap_many_and_out_parameter(swapper224, astronaut):
    frames = [astronaut, cv2.flip(astronaut, 1)]
    batch = swapper224.swap_many(frames)
    for frame, result in zip(frames, batch):
        assert_within_one_level(result, python_path(swapper224, frame))
    buffer = astronaut.copy()
    assert swapper224.swap(buffer, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, batch[0])
    strided = np.zeros((astronaut.shape[0], astronaut.shape[1] * 2, 3), np.uint8)[:, ::2]  # not contiguous
    assert swapper224.swap(astronaut, out=strided) is strided
    np.testing.assert_array_equal(strided, batch[0])


@needs_assets
def test_group_photo_matches_python_pipeline(official_models, detector, astronaut):
    group = cv2.imread(str(IMAGES / "group_6faces.jpg"))
    swapper = Swapper(astronaut, official_models, detector=detector, faces="all")
    got = swapper.swap(group)
    assert len(swapper.last_faces) == 6
    assert_within_one_level(got, python_path(swapper, group))


def test_identity_change_reaches_the_core(official_models, detector, astronaut):
    swapper = Swapper(astronaut, official_models, detector=detector)
    before = swapper.swap(astronaut)
    swapper.set_source(cv2.GaussianBlur(cv2.flip(astronaut, 1), (0, 0), 3))
    after = swapper.swap(astronaut)
    assert np.abs(after.astype(int) - before.astype(int)).max() > 0
    assert_within_one_level(after, python_path(swapper, astronaut))


def test_core_selection(official_models, detector, astronaut):
    assert Swapper(astronaut, official_models, detector=detector, core=False).core is None
    assert Swapper(astronaut, official_models, detector=detector, backend="torch").core is None
    with pytest.raises(MfsError, match="fused"):
        Swapper(astronaut, official_models, detector=detector, backend="torch", core=True)


@pytest.mark.parametrize("isa", ISAS)
def test_each_kernel_set_matches(official_models, astronaut, landmarks, isa):
    from mfs_fast.backends.pipeline_core import PipelineCore
    from mfs_fast.backends.fused import FusedIDN

    core = PipelineCore(FusedIDN(official_models, threads=2, isa=isa))
    swapper = Swapper(astronaut, official_models, backend=core.idn, detector=create_detector("blazeface"))
    assert swapper.core.isa == core.isa == ("avx2" if isa == "avx2" else "portable")
    faces = landmarks[None]
    got = core.swap(astronaut.copy(), faces)
    assert_within_one_level(got, python_reference(swapper, astronaut, faces))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("detail", [0.7, 1.5, 3.0])
def test_detail_keeping_paste_matches_python(official_models, astronaut, landmarks, isa, detail):
    """detail > 0: the core pastes the low band of each change, as paste_back(crop=, detail=)."""
    from mfs_fast.backends.fused import FusedIDN
    from mfs_fast.backends.pipeline_core import PipelineCore

    core = PipelineCore(FusedIDN(official_models, threads=2, isa=isa), detail=detail)
    swapper = Swapper(astronaut, official_models, backend=core.idn, detector=create_detector("blazeface"),
                      detail=detail)
    assert swapper.core.detail == pytest.approx(detail) and core.detail == pytest.approx(detail)
    h, w = astronaut.shape[:2]
    frame = np.ascontiguousarray(np.tile(astronaut, (1, 2, 1)))
    faces = np.stack([landmarks, landmarks + np.float32((w, 0)), landmarks + np.float32((w + 30, 20))])
    expected = python_reference(swapper, frame, faces, detail=detail)
    got = core.swap(frame.copy(), faces)
    assert_within_one_level(got, expected)
    plain = python_reference(swapper, frame, faces)
    assert np.abs(got.astype(int) - plain).max() > 20  # it is not the official blend
    core.detail = 0.0
    assert_within_one_level(core.swap(frame.copy(), faces), plain)
    with pytest.raises(ValueError, match="detail"):
        core.detail = -1.0


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("detail, chroma, brightness", [(1.5, 0.0, 0.0), (0.0, 0.0, 1.0), (1.5, 0.4, 0.7)])
def test_colour_limited_paste_matches_python(official_models, astronaut, landmarks, isa, detail, chroma, brightness):
    """chroma / brightness < 1: the core pastes only those shares of each change's colour and mean
    brightness, as paste_back(chroma=, brightness=), also without the detail band (detail 0)."""
    from mfs_fast.backends.fused import FusedIDN
    from mfs_fast.backends.pipeline_core import PipelineCore

    core = PipelineCore(FusedIDN(official_models, threads=2, isa=isa), detail=detail, chroma=chroma,
                        brightness=brightness)
    assert core.colour == pytest.approx((chroma, brightness))
    swapper = Swapper(astronaut, official_models, backend=core.idn, detector=create_detector("blazeface"),
                      detail=detail, chroma=chroma, brightness=brightness)
    assert swapper.core.colour == pytest.approx((chroma, brightness))
    h, w = astronaut.shape[:2]
    frame = np.ascontiguousarray(np.tile(astronaut, (1, 2, 1)))
    faces = np.stack([landmarks, landmarks + np.float32((w, 0))])
    expected = python_reference(swapper, frame, faces, detail, chroma, brightness)
    got = core.swap(frame.copy(), faces)
    assert_within_one_level(got, expected)
    full = python_reference(swapper, frame, faces, detail)
    assert np.abs(got.astype(int) - full).max() > 10  # the colour limit changed the paste
    core.set_colour(1.0, 1.0)
    assert_within_one_level(core.swap(frame.copy(), faces), full)
    with pytest.raises(ValueError, match="chroma and brightness"):
        core.set_colour(1.5, 0.0)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("detail, chroma", [(0.0, 1.0), (1.5, 0.0)])
def test_target_eyes_paste_matches_python(official_models, astronaut, landmarks, isa, detail, chroma):
    """eyes="target": the core leaves each face's eyes to the frame, as paste_back(eyes=) does,
    on the official blend and on the change path; back to "swap", the official paste again."""
    from mfs_fast.backends.fused import FusedIDN
    from mfs_fast.backends.pipeline_core import PipelineCore

    core = PipelineCore(FusedIDN(official_models, threads=2, isa=isa), detail=detail, chroma=chroma, eyes="target")
    assert core.eyes == "target"
    swapper = Swapper(astronaut, official_models, backend=core.idn, detector=create_detector("blazeface"),
                      detail=detail, chroma=chroma, eyes="target")
    assert swapper.core.eyes == "target"
    h, w = astronaut.shape[:2]
    frame = np.ascontiguousarray(np.tile(astronaut, (1, 2, 1)))
    faces = np.stack([landmarks, landmarks + np.float32((w, 0))])
    got = core.swap(frame.copy(), faces)
    assert_within_one_level(got, python_reference(swapper, frame, faces, detail, chroma, eyes="target"))
    for lm in faces:  # the frame's own pixels at the eyes (the template's, mapped back: what the paste keeps)
        inverse = invert_affine(alignment_matrix(lm, swapper.size))
        for x, y in template(swapper.size)[:2] @ inverse[:, :2].T + inverse[:, 2]:
            window = (slice(int(y) - 1, int(y) + 2), slice(int(x) - 1, int(x) + 2))
            assert np.abs(got[window].astype(int) - frame[window]).max() <= 2
    official = python_reference(swapper, frame, faces, detail, chroma)
    assert np.abs(got.astype(int) - official).max() > 20
    core.eyes = "swap"
    assert_within_one_level(core.swap(frame.copy(), faces), official)
    with pytest.raises(ValueError, match="eyes"):
        core.eyes = "source"
    with pytest.raises(ValueError, match="weights must be a float array of shape"):
        core._core.set_paste_weights(np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match="within"):
        core._core.set_paste_weights(np.full((224, 224), 2.0, np.float32))


# ------------------------------------------------------------------------------ in place / out
def test_out_leaves_the_frame_alone_and_in_place_touches_only_the_boxes(swapper224, astronaut, landmarks):
    core = swapper224.core
    frame = astronaut.copy()
    frame.setflags(write=False)  # only read when out is given
    out = np.zeros_like(frame)
    assert core.swap(frame, landmarks[None], out=out) is out
    np.testing.assert_array_equal(frame, astronaut)
    in_place = astronaut.copy()
    assert core.swap(in_place, landmarks[None]) is in_place
    np.testing.assert_array_equal(in_place, out)
    inside = boxes_mask(astronaut.shape, landmarks[None], 224)
    np.testing.assert_array_equal(in_place[~inside], astronaut[~inside])
    assert (in_place[inside] != astronaut[inside]).sum() > 10_000
    # no faces: out is a copy of the frame, in place nothing changes
    empty = np.zeros((0, 5, 2), np.float32)
    np.testing.assert_array_equal(core.swap(frame, empty, out=np.zeros_like(frame)), astronaut)
    untouched = astronaut.copy()
    core.swap(untouched, empty)
    np.testing.assert_array_equal(untouched, astronaut)


def test_faces_partly_or_wholly_outside_the_frame(swapper224, astronaut, landmarks):
    h, w = astronaut.shape[:2]
    faces = np.stack([landmarks - np.float32([180, 0]), landmarks + np.float32([0, 200]),
                      landmarks + np.float32([5 * w, 0])])  # left edge, bottom edge, far away
    got = swapper224.core.swap(astronaut.copy(), faces)
    assert_within_one_level(got, python_reference(swapper224, astronaut, faces))


def test_bad_inputs_raise_value_errors(swapper224, astronaut, landmarks):
    core = swapper224.core
    faces = landmarks[None]
    cases = [
        (dict(frame=astronaut.astype(np.float32), landmarks=faces), "uint8"),
        (dict(frame=astronaut[:, ::2], landmarks=faces), "C-contiguous"),
        (dict(frame=np.zeros((64, 64, 4), np.uint8), landmarks=faces), r"\(H, W, 3\)"),
        (dict(frame=astronaut[..., 0].copy(), landmarks=faces), r"\(H, W, 3\)"),
        (dict(frame=[[0, 0, 0]], landmarks=faces), "numpy uint8 array"),
        (dict(frame=astronaut.copy(), landmarks=np.zeros((1, 4, 2), np.float32)), "landmarks must have shape"),
        (dict(frame=astronaut.copy(), landmarks=np.zeros((1, 5, 3), np.float32)), "landmarks must have shape"),
        (dict(frame=astronaut.copy(), landmarks="eyes"), "landmarks must be a float array"),
        (dict(frame=astronaut.copy(), landmarks=np.full((1, 5, 2), np.nan, np.float32)), "finite"),
        (dict(frame=astronaut.copy(), landmarks=np.zeros((1, 5, 2), np.float32)), "collinear"),
        (dict(frame=astronaut.copy(), matrices=np.zeros((1, 3, 2), np.float32)), "matrices must have shape"),
        (dict(frame=astronaut.copy(), matrices=np.zeros((1, 2, 3), np.float32)), "singular"),
        (dict(frame=astronaut.copy(), landmarks=np.stack([landmarks] * 2), matrices=np.zeros((1, 2, 3))), "same faces"),
        (dict(frame=astronaut.copy()), "landmarks"),
        (dict(frame=astronaut.copy(), landmarks=faces, out=np.zeros((10, 10, 3), np.uint8)), "shape"),
        (dict(frame=astronaut.copy(), landmarks=faces, out=np.zeros(astronaut.shape, np.float32)), "out must be uint8"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            core.swap(**kwargs)
    read_only = astronaut.copy()
    read_only.setflags(write=False)
    with pytest.raises(ValueError, match="writable"):
        core.swap(read_only, faces)
    buffer = np.zeros((astronaut.shape[0] + 1,) + astronaut.shape[1:], np.uint8)
    with pytest.raises(ValueError, match="overlap"):
        core.swap(buffer[1:], faces, out=buffer[:-1])
    # a failed call writes nothing
    frame = astronaut.copy()
    with pytest.raises(ValueError, match="singular"):
        core.swap(frame, matrices=np.stack([alignment_matrix(landmarks, 224), np.zeros((2, 3), np.float32)]))
    np.testing.assert_array_equal(frame, astronaut)


def test_the_gil_is_released_while_it_works(swapper224, astronaut, landmarks):
    """A Python thread keeps running during one long native call (many faces, one thread): with
    the GIL held it could not run at all between the call's first and last milliseconds."""
    frame = np.ascontiguousarray(np.tile(astronaut, (2, 2, 1)))
    faces = np.stack([landmarks + np.float32([dx, dy]) for dx in (0, 512) for dy in (0, 512)] * 4)
    core = swapper224.core
    threads, core.threads = core.threads, 1
    ticks: list[float] = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    worker = threading.Thread(target=tick)
    try:
        worker.start()
        time.sleep(0.01)
        start = time.perf_counter()
        core.swap(frame, faces)
        end = time.perf_counter()
    finally:
        stop.set()
        worker.join()
        core.threads = threads
    assert end - start > 0.05, "the call was too short to tell"
    lo, hi = start + 0.25 * (end - start), start + 0.75 * (end - start)
    assert sum(lo <= t <= hi for t in ticks) > 10


# ------------------------------------------------------------------------------ stages alone
@pytest.mark.parametrize("isa", ISAS)
def test_warp_matches_cv2_bit_for_bit(astronaut, isa):
    """cv2.warpAffine's INTER_LINEAR (OpenCV >= 4.11 float path): identical crops up to OpenCV
    5.0 (the scalar kernels emulate FMA), borders included; OpenCV 5.1 rounds ~1e-4 of the
    samples one level apart."""
    if int(cv2.__version__.split(".")[0]) < 5 and tuple(map(int, cv2.__version__.split(".")[:2])) < (4, 11):
        pytest.skip(f"OpenCV {cv2.__version__} warps with fixed-point weights")
    nat = native.require_native()
    exact = tuple(map(int, cv2.__version__.split(".")[:2])) < (5, 1)  # bit-identical to 4.11 .. 5.0
    rng = np.random.default_rng(7)
    for _ in range(12):
        angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.3, 3.0)
        matrix = np.array([[scale * np.cos(angle), -scale * np.sin(angle), rng.uniform(-700, 100)],
                           [scale * np.sin(angle), scale * np.cos(angle), rng.uniform(-700, 100)]], np.float32)
        for size in (224, 256):
            expected = cv2.warpAffine(astronaut, matrix, (size, size), flags=cv2.INTER_LINEAR)
            expected = expected[..., ::-1].transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0)
            got = nat.warp_faces(astronaut, matrix[None], size, 2, isa)[0]
            if exact:
                np.testing.assert_array_equal(got, expected)
            else:  # OpenCV 5.1 moved a few samples by one level (~1e-4 of them)
                assert np.abs(got - expected).max() <= 1.0 / 255 + 1e-6
                assert np.mean(got != expected) < 1e-3


def test_blend_mask_and_alignment_match_python(landmarks):
    nat = native.require_native()
    rng = np.random.default_rng(3)
    for size in (224, 256):
        for _ in range(4):
            mask = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 6)
            mask = ((mask - mask.min()) / (mask.max() - mask.min()) * 0.003).astype(np.float32)
            np.testing.assert_array_equal(nat.blend_mask(mask), blend_mask(mask))
        np.testing.assert_array_equal(nat.blend_mask(np.zeros((size, size), np.float32)), np.zeros((size, size)))
        points = landmarks + rng.normal(0, 2, landmarks.shape).astype(np.float32)
        np.testing.assert_allclose(nat.alignment_matrix(points, size), alignment_matrix(points, size), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("isa", ISAS)
def test_paste_matches_paste_back(astronaut, landmarks, isa):
    nat = native.require_native()
    rng = np.random.default_rng(11)
    size = 224
    for _ in range(6):
        points = landmarks + rng.normal(0, 3, landmarks.shape).astype(np.float32) + rng.uniform(-200, 250, 2).astype(np.float32)
        matrix = alignment_matrix(points, size)
        face = rng.random((3, size, size)).astype(np.float32)
        mask = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 6)
        mask = ((mask - mask.min()) / (mask.max() - mask.min()) * 0.003).astype(np.float32)
        expected = paste_back(astronaut, face.transpose(1, 2, 0)[..., ::-1] * np.float32(255.0), mask, invert_affine(matrix))
        got = astronaut.copy()
        nat.paste_faces(got, matrix[None], face[None], mask[None, None], 2, isa)
        assert_within_one_level(got, expected)
