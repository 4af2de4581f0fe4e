"""Swapper end to end on real photos: detection, selection, identity change, paste-back, stats."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from mfs_fast import ImageError, MfsError, NoFaceError, Swapper
from mfs_fast.face import align_face, template
from mfs_fast.face.detectors import create_detector
from mfs_fast.face.paste import footprint_box

from conftest import SHARED_ASSETS, _astronaut_bgr

IMAGES = SHARED_ASSETS / "images"
needs_assets = pytest.mark.skipif(not IMAGES.is_dir(), reason=f"shared test images not found at {IMAGES}")


@pytest.fixture(scope="module")
def detector():
    return create_detector("blazeface")


@pytest.fixture(scope="module")
def astronaut():
    return _astronaut_bgr()


@pytest.fixture(scope="module")
def swapper(official_models, detector, astronaut):
    return Swapper(astronaut, official_models, detector=detector)


def outside_boxes(frame_shape, faces, size=224):
    keep = np.ones(frame_shape[:2], bool)
    for face in faces:
        inverse = align_face(np.zeros((8, 8, 3), np.uint8), face.landmarks, size).inverse
        box = footprint_box(inverse, size, frame_shape)
        if box:
            x0, y0, x1, y1 = box
            keep[y0:y1, x0:x1] = False
    return keep


def eye_error_after_alignment(detector, image) -> float:
    (face,) = detector.detect(image)
    aligned = align_face(image, face.landmarks, 224)
    eyes = face.landmarks[:2].astype(np.float64) @ aligned.matrix[:, :2].T + aligned.matrix[:, 2]
    return float(np.abs(eyes - template(224)[:2]).max())


def test_alignment_of_a_smiling_face(detector, astronaut):
    """The least-squares fit balances all 5 points: a broad smile widens the mouth and pulls the
    eyes up to ~5 px off the template (the official method does the same)."""
    assert eye_error_after_alignment(detector, astronaut) <= 6.0


@needs_assets
@pytest.mark.parametrize("name", ["biden_1.jpg", "rudd_1.jpg", "portrait_s12.jpg"])
def test_alignment_puts_detected_eyes_on_the_template(detector, name):
    """Neutral expressions: the detected eyes land within 3 px of the template."""
    assert eye_error_after_alignment(detector, cv2.imread(str(IMAGES / name))) <= 3.0


def test_swap_changes_the_face_only(swapper, astronaut):
    original = astronaut.copy()
    out = swapper.swap(astronaut)
    np.testing.assert_array_equal(astronaut, original)  # input untouched
    assert out is not astronaut and out.shape == astronaut.shape and out.dtype == np.uint8
    assert len(swapper.last_faces) == 1
    keep = outside_boxes(astronaut.shape, swapper.last_faces)
    np.testing.assert_array_equal(out[keep], astronaut[keep])
    assert np.abs(out[~keep].astype(int) - astronaut[~keep].astype(int)).mean() > 1.0


def test_out_parameter_writes_in_place(swapper, astronaut):
    expected = swapper.swap(astronaut)
    buffer = astronaut.copy()
    assert swapper.swap(buffer, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, expected)


def test_swap_many_matches_single_swaps(swapper, astronaut):
    frames = [astronaut, cv2.flip(astronaut, 1)]
    batch = swapper.swap_many(frames)
    for frame, result in zip(frames, batch):
        assert np.abs(result.astype(int) - swapper.swap(frame).astype(int)).max() <= 1


def test_set_source_changes_identity_without_rebuilding(official_models, detector, astronaut):
    swapper = Swapper(astronaut, official_models, detector=detector)
    backend, idn = swapper.backend, swapper.models.idn
    before = swapper.swap(astronaut)
    other = cv2.flip(astronaut, 1)
    other = cv2.GaussianBlur(other, (0, 0), 3)  # a different-looking source face
    seconds = swapper.set_source(other)
    after = swapper.swap(astronaut)
    assert seconds > 0 and swapper.backend is backend and swapper.models.idn is idn
    assert np.abs(after.astype(int) - before.astype(int)).max() > 0


def test_frames_without_faces_pass_through_and_are_counted(swapper):
    blank = np.full((240, 320, 3), 127, np.uint8)
    before = swapper.stats.frames_without_face
    out = swapper.swap(blank)
    np.testing.assert_array_equal(out, blank)
    assert swapper.stats.frames_without_face == before + 1


def test_bad_frames_and_sources(official_models, detector, swapper, tmp_path):
    with pytest.raises(ImageError, match="8-bit BGR array"):
        swapper.swap(np.zeros((10, 10), np.float32))
    with pytest.raises(NoFaceError, match="no face found in"):
        Swapper(np.full((200, 200, 3), 90, np.uint8), official_models, detector=detector)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        Swapper(empty, official_models, detector=detector)


@needs_assets
def test_group_photo_all_largest_and_reference(official_models, detector, astronaut):
    group = cv2.imread(str(IMAGES / "group_6faces.jpg"))
    everyone = Swapper(astronaut, official_models, detector=detector, faces="all")
    out = everyone.swap(group)
    assert len(everyone.last_faces) == 6
    keep = outside_boxes(group.shape, everyone.last_faces)
    np.testing.assert_array_equal(out[keep], group[keep])

    largest = Swapper(astronaut, official_models, detector=detector, faces="largest")
    largest.swap(group)
    assert len(largest.last_faces) == 1
    assert largest.last_faces[0].area == max(f.area for f in everyone.last_faces)

    # reference = one person of the photo, as an aligned crop: only that face matches (the
    # crop path agrees with the frame path to cosine >= 0.95; the nearest other face is 0.93)
    person = everyone.last_faces[2]
    crop = align_face(group, person.landmarks, 224).crop
    from mfs_fast.pipeline import AlignedCrop

    picky = Swapper(astronaut, official_models, detector=detector, reference=AlignedCrop(crop), similarity=0.95)
    picky.swap(group)
    assert len(picky.last_faces) == 1
    np.testing.assert_allclose(picky.last_faces[0].box, person.box)


@needs_assets
def test_several_faces_in_source_uses_largest_and_says_so(official_models, detector):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Swapper(IMAGES / "group_6faces.jpg", official_models, detector=detector)
    assert any("6 faces" in str(w.message) and "largest" in str(w.message) for w in caught)


# --- argument checks, odd frames, what the summary counts ---------------------------------

@pytest.mark.parametrize("options, message", [
    ({"similarity": 5}, "similarity must be a cosine similarity between -1 and 1, got 5"),
    ({"similarity": -1.5}, "similarity must be a cosine similarity"),
    ({"similarity": float("nan")}, "similarity must be a cosine similarity"),
    ({"faces": "biggest"}, "faces must be one of all, largest"),
    ({"detail": -1}, "detail must be between 0 \\(off\\) and 8 crop pixels, got -1"),
    ({"detail": float("nan")}, "detail must be between"),
    ({"detail": "sharp"}, "detail must be a number of crop pixels"),
    ({"chroma": 1.5}, "chroma must be a share from 0 \\(the target's\\) to 1 \\(the swap's\\), got 1.5"),
    ({"brightness": -0.1}, "brightness must be a share from 0"),
    ({"chroma": "grey"}, "chroma must be a share"),
])
def test_bad_swapper_arguments_are_refused_before_loading(options, message, tmp_path):
    """Checked first: the missing weights folder would otherwise be the error."""
    with pytest.raises(MfsError, match=message):
        Swapper(np.zeros((8, 8, 3), np.uint8), tmp_path / "no-weights", **options)


def test_similarity_without_reference_is_flagged(tmp_path):
    """Said up front too (the missing weights are the error that follows)."""
    with pytest.warns(UserWarning, match="no effect without a reference"), pytest.raises(MfsError):
        Swapper(np.zeros((8, 8, 3), np.uint8), tmp_path / "no-weights", similarity=0.5)


@pytest.mark.parametrize("every", [0, -3, 2.5])
def test_bad_every_is_refused_before_any_media_is_opened(swapper, tmp_path, every):
    from mfs_fast.webcam import run_live

    with pytest.raises(MfsError, match="every"):
        swapper.swap_video(tmp_path / "missing.mp4", tmp_path / "out.mp4", every=every)
    with pytest.raises(MfsError, match="every"):
        swapper.tracker(every=every)
    with pytest.raises(MfsError, match="every"):
        run_live(swapper, camera=str(tmp_path / "missing.mp4"), window=False, every=every)


@pytest.mark.parametrize("shape", [(7, 7, 3), (1, 1, 3), (7, 300, 3)])
def test_tiny_frames_pass_through_unchanged(swapper, shape):
    """Too small for a face is not an error: the frame comes back as it was, counted as
    a frame without a face (see Swapper.swap)."""
    tiny = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    before = swapper.stats.frames_without_face
    np.testing.assert_array_equal(swapper.swap(tiny), tiny)
    np.testing.assert_array_equal(swapper.swap_tracked(tiny, swapper.tracker(every=1)), tiny)
    assert swapper.stats.frames_without_face == before + 2


@needs_assets
def test_faces_that_do_not_match_the_reference_are_counted_apart(official_models, detector, astronaut, swapper,
                                                                 capsys):
    from mfs_fast.cli import _print_summary

    picky = Swapper(astronaut, official_models, detector=detector, reference=IMAGES / "biden_1.jpg")
    blank = np.full((240, 320, 3), 127, np.uint8)
    for frame in (astronaut, blank, astronaut):
        np.testing.assert_array_equal(picky.swap(frame), frame)  # the astronaut is not Biden
    assert (picky.stats.frames, picky.stats.frames_without_face, picky.stats.frames_without_match) == (3, 1, 2)
    _print_summary(picky, "out.mp4")
    line = capsys.readouterr().out
    assert "1 frame(s) without a face, 2 frame(s) where no face matched the reference passed through" in line
    # without a reference, the summary does not mention one
    _print_summary(swapper, "out.mp4")
    assert "reference" not in capsys.readouterr().out


@pytest.mark.parametrize("option, value, message", [
    ("--similarity", "5", "similarity must be a cosine similarity between -1 and 1, got 5.0"),
    ("--detail", "12", "detail must be between 0 (off) and 8 crop pixels, got 12.0"),
    ("--chroma", "2", "chroma must be a share from 0 (the target's) to 1 (the swap's), got 2.0"),
    ("--brightness", "x", "expected a number, got 'x'"),
    ("--min-eye-distance", "0", "min_eye_distance must be a positive number of pixels, got 0.0"),
    ("--min-eye-distance", "nan", "min_eye_distance must be a positive number of pixels, got nan"),
    ("--precision", "bf16", "expected one of float32, bfloat16, got 'bf16'"),
])
def test_cli_refuses_an_impossible_option_in_one_line(tmp_path, option, value, message):
    """As a user runs it: refused before any file is read (these do not even exist)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "mfs_fast", "swap", "--source", tmp_path / "a.jpg", "--target",
                           tmp_path / "b.jpg", "-o", tmp_path / "c.jpg", option, value],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr


def test_detail_defaults_to_what_the_weights_were_trained_for(official_models, detector, astronaut):
    """Official weights: the official blend (0); weights trained with keep_target_detail carry
    their value; an explicit detail= wins. The pipeline core, when used, gets the same value."""
    import dataclasses

    assert Swapper(astronaut, official_models, detector=detector).detail == 0.0
    trained = dataclasses.replace(official_models, paste_detail=1.5)
    swapper = Swapper(astronaut, trained, detector=detector)
    assert swapper.detail == 1.5 and (swapper.core is None or swapper.core.detail == 1.5)
    assert Swapper(astronaut, trained, detector=detector, detail=0).detail == 0.0
    assert (swapper.chroma, swapper.brightness) == (1.0, 1.0)  # colour: the official paste unless trained otherwise
    coloured = dataclasses.replace(official_models, paste_chroma=0.0, paste_brightness=0.25)
    limited = Swapper(astronaut, coloured, detector=detector)
    assert (limited.chroma, limited.brightness) == (0.0, 0.25)
    assert limited.core is None or limited.core.colour == pytest.approx((0.0, 0.25))
    assert Swapper(astronaut, coloured, detector=detector, chroma=1, brightness=1).chroma == 1.0
    kept = swapper.swap(astronaut)
    assert (kept != astronaut).sum() > 10_000  # still a swap
    assert swapper.eyes == "swap"  # eyes: the swap's (official) unless the weights say otherwise
    target_eyes = dataclasses.replace(official_models, paste_eyes="target")
    keeping = Swapper(astronaut, target_eyes, detector=detector)
    assert keeping.eyes == "target" and (keeping.core is None or keeping.core.eyes == "target")
    assert Swapper(astronaut, target_eyes, detector=detector, eyes="swap").eyes == "swap"
    with pytest.raises(MfsError, match="eyes must be one of swap, target"):
        Swapper(astronaut, official_models, detector=detector, eyes="source")



def test_the_native_idn_takes_half_the_cores_while_video_stages_overlap(tmp_path):
    """Pipelined swap_video: every core is busy with some stage, so the IDN runs on half its
    threads (at least one) for the run and gets them back after; threads chosen by the caller,
    and the sequential path, are left alone."""
    from sample_media import drifting_face_clip

    swapper = Swapper(_astronaut_bgr())  # bundled starter weights on the default backend
    if swapper.core is None:
        pytest.skip("the native extension is not built: no pipeline core to share the cores with")
    full = swapper.core.threads
    seen = []
    track = swapper._track

    def tracking_and_noting(frame, tracker):  # runs inside the video's face-finding stage
        seen.append((swapper.backend.threads, swapper.core.threads))
        return track(frame, tracker)

    swapper._track = tracking_and_noting
    clip = drifting_face_clip(tmp_path / "clip.mp4", 360, 300, [40, 44, 48], top=20, background=60)
    swapper.swap_video(clip, tmp_path / "out.mp4", progress=False)
    assert seen and set(seen) == {(max(1, full // 2), max(1, full // 2))}
    assert (swapper.backend.threads, swapper.core.threads) == (full, full)
    seen.clear()
    swapper.swap_video(clip, tmp_path / "out2.mp4", progress=False, pipelined=False)
    assert set(seen) == {(full, full)}
    chosen = Swapper(_astronaut_bgr(), threads=full)
    with chosen.sharing_cores():
        assert chosen.core.threads == full


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_pipelined_video_swaps_two_frames_at_once_with_the_same_result(tmp_path, precision):
    """Pipelined, two threads swap consecutive frames (each on a pipeline core of its own, the
    same identity and kernels): frames leave in order, equal to the one-at-a-time path's, and
    the totals count every frame and face once."""
    from sample_media import drifting_face_clip

    from mfs_fast.backends.fused import bfloat16_available
    from mfs_fast.media import read_frames

    if precision == "bfloat16" and not bfloat16_available():
        pytest.skip("this CPU lacks AVX512-BF16: the bfloat16 kernels cannot run here")
    swapper = Swapper(_astronaut_bgr(), precision=precision)
    if swapper.core is None:
        pytest.skip("the native extension is not built: no pipeline core to replicate")
    clip = drifting_face_clip(tmp_path / "clip.mp4", 360, 300, [40, 44, 48], top=20, background=60)
    frames = {}
    for pipelined in (True, False):
        swapper.stats = type(swapper.stats)()
        stats = swapper.swap_video(clip, tmp_path / f"{pipelined}.mp4", progress=False, pipelined=pipelined)
        swap = next(t for t in stats.stages if t.name == "swap")
        assert swap.threads == (2 if pipelined else 1) and swap.items == stats.frames_in
        assert swapper.stats.frames == stats.frames_in and swapper.stats.faces_swapped == stats.frames_in
        frames[pipelined] = np.stack(list(read_frames(tmp_path / f"{pipelined}.mp4")))
    assert frames[True].shape == frames[False].shape
    np.testing.assert_array_equal(frames[True], frames[False])


def test_smaller_faces_on_request(tmp_path):
    """detector_options reach a detector given by name (--min-eye-distance on the command line):
    smaller tiles for smaller faces; a detector object takes none, and an SCRFD file refuses the
    option in one line, before anything is read."""
    import subprocess
    import sys

    from mfs_fast.face.detectors import TILE_PER_EYE_DISTANCE

    swapper = Swapper(_astronaut_bgr(), detector_options={"min_eye_distance": 20})
    assert swapper.detector.tile == round(20 * TILE_PER_EYE_DISTANCE) < Swapper(_astronaut_bgr()).detector.tile
    with pytest.raises(MfsError, match="detector_options apply to a detector given by name"):
        Swapper(_astronaut_bgr(), detector=swapper.detector, detector_options={"min_eye_distance": 20})
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(tmp_path / name), _astronaut_bgr())
    proc = subprocess.run([sys.executable, "-m", "mfs_fast", "swap", "--source", tmp_path / "a.jpg", "--target",
                           tmp_path / "b.jpg", "-o", tmp_path / "c.jpg", "--detector", tmp_path / "m.onnx",
                           "--min-eye-distance", "20"], capture_output=True, text=True, timeout=300)
    assert not (tmp_path / "c.jpg").exists()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--min-eye-distance applies to the blazeface detector" in proc.stderr


def test_bfloat16_precision_swaps_within_a_few_levels_of_float32(tmp_path):
    """Swapper(precision="bfloat16") (--precision bfloat16): the fused IDN's bf16 kernels where the
    CPU has AVX512-BF16, pixels of the swapped face within a few levels of float32 (measured on
    real photos: mean 0.02-0.03, max 1-3); elsewhere, and with another backend, one clear error."""
    import subprocess
    import sys

    from mfs_fast.backends.fused import bfloat16_available
    from mfs_fast.demo import SOURCE_PHOTO

    frame = _astronaut_bgr()
    with pytest.raises(MfsError, match="precision must be one of float32, bfloat16, not 'half'"):
        Swapper(SOURCE_PHOTO, precision="half")
    if not bfloat16_available():
        with pytest.raises(MfsError, match="needs a CPU with AVX512-BF16"):
            Swapper(SOURCE_PHOTO, precision="bfloat16")
        return
    with pytest.raises(MfsError, match="runs on the 'fused' backend only, not torch"):
        Swapper(SOURCE_PHOTO, precision="bfloat16", backend="torch")
    exact, fast = Swapper(SOURCE_PHOTO), Swapper(SOURCE_PHOTO, precision="bfloat16")
    assert fast.backend.precision == "bfloat16" and fast.core is not None  # the pipeline core runs on it
    a, b = exact.swap(frame).astype(int), fast.swap(frame).astype(int)
    swapped = np.abs(a - frame).sum(-1) > 0
    diff = np.abs(a - b)[swapped]
    assert swapped.sum() > 10_000 and diff.mean() < 0.2 and diff.max() <= 6
    cv2.imwrite(str(tmp_path / "b.png"), frame)
    proc = subprocess.run([sys.executable, "-m", "mfs_fast", "swap", "--source", SOURCE_PHOTO, "--target",
                           tmp_path / "b.png", "-o", tmp_path / "c.png", "--precision", "bfloat16"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert np.abs(cv2.imread(str(tmp_path / "c.png")).astype(int) - b).max() <= 1


def test_pipelined_video_marks_in_a_stage_of_its_own(tmp_path):
    """The watermark runs after the swap in a stage of its own (off the busiest stage): every
    frame still leaves marked, and an opted-out swapper has no such stage."""
    from sample_media import drifting_face_clip

    from mfs_fast.watermark.verify import verify_file

    clip = drifting_face_clip(tmp_path / "clip.mp4", 360, 300, [40, 44, 48], top=20, background=60)
    stats = Swapper(_astronaut_bgr()).swap_video(clip, tmp_path / "out.mp4", progress=False)
    assert [t.name for t in stats.stages] == ["decode", "detect", "swap", "mark", "encode"]
    verdict = verify_file(tmp_path / "out.mp4", frames=3)
    assert verdict.marked, verdict.lines()
    with pytest.warns(UserWarning):
        plain = Swapper(_astronaut_bgr(), watermark=False)
    stats = plain.swap_video(clip, tmp_path / "plain.mp4", progress=False)
    assert [t.name for t in stats.stages] == ["decode", "detect", "swap", "encode"]
    assert not verify_file(tmp_path / "plain.mp4", frames=3).marked
