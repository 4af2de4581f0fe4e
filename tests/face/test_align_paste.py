"""Alignment to the ArcFace template and the official paste-back, restricted to the face box."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mfs_fast.face import align_face, alignment_matrix, blend_mask, paste_back, template
from mfs_fast.face.paste import EYES, LUMA_BGR, footprint_box, limit_colour, paste_weights, target_eyes


def random_similarity(rng, scale=(0.8, 2.5), x=(100, 500), y=(100, 300)) -> np.ndarray:
    """A random rotation + scale + shift, as a 2x3 matrix."""
    angle, k = rng.uniform(-0.6, 0.6), rng.uniform(*scale)
    c, s = k * np.cos(angle), k * np.sin(angle)
    return np.array([[c, -s, rng.uniform(*x)], [s, c, rng.uniform(*y)]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_template_matches_design():
    t = template(224)
    np.testing.assert_allclose(t[0], [(30.2946 + 8) * 2, 51.6963 * 2])
    np.testing.assert_allclose(t[4], [(62.7299 + 8) * 2, 92.2041 * 2])


@pytest.mark.parametrize("size", [224, 256])
def test_alignment_inverts_a_known_transform(size):
    rng = np.random.default_rng()
    placement = random_similarity(rng)
    landmarks = apply(placement, template(size)) + rng.normal(0, 0.5, (5, 2))  # detector noise
    matrix = alignment_matrix(landmarks, size)
    aligned = apply(matrix.astype(np.float64), landmarks)
    assert np.abs(aligned - template(size)).max() < 3.0
    noiseless = apply(alignment_matrix(apply(placement, template(size)), size).astype(np.float64),
                      apply(placement, template(size)))
    np.testing.assert_allclose(noiseless, template(size), atol=1e-2)


def official_dealign(generated: np.ndarray, origin: np.ndarray, back: np.ndarray, idn_mask: np.ndarray) -> np.ndarray:
    """Independent full-frame version of the official paste-back (DESIGN.md section 3)."""
    kernel = np.ones((11, 11), np.uint8)
    mask = np.where(idn_mask > 0.001, 1.0, idn_mask).astype(np.float32)
    mask = cv2.erode(cv2.dilate(mask, kernel), kernel, iterations=2)
    mask = cv2.blur(mask, (7, 7))
    fade = np.zeros_like(mask)
    fade[10:-10, 10:-10] = 1.0
    mask = mask * cv2.blur(fade, (11, 11))
    h, w = origin.shape[:2]
    face = cv2.warpAffine(generated, back, (w, h))
    mask = cv2.warpAffine(mask, back, (w, h))[..., None]
    return (face * mask + origin * (1 - mask)).clip(0, 255).astype(np.uint8)


@pytest.fixture
def scene():
    rng = np.random.default_rng()
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    landmarks = apply(random_similarity(rng, scale=(0.5, 1.4), x=(150, 350), y=(100, 200)), template(224))
    aligned = align_face(frame, landmarks, 224)
    generated = rng.uniform(0, 255, (224, 224, 3)).astype(np.float32)
    yy, xx = np.mgrid[:224, :224]
    idn_mask = ((xx - 112) ** 2 + (yy - 120) ** 2 < 80**2).astype(np.float32) * rng.uniform(0.01, 1, (224, 224))
    return frame, aligned, generated, idn_mask.astype(np.float32)


def test_paste_back_matches_official_full_frame(scene):
    frame, aligned, generated, idn_mask = scene
    ours = paste_back(frame, generated, idn_mask, aligned.inverse)
    theirs = official_dealign(generated, frame, aligned.inverse, idn_mask)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1  # warp rounding differences only


def test_pixels_outside_the_face_box_are_untouched(scene):
    frame, aligned, generated, idn_mask = scene
    original = frame.copy()
    out = paste_back(frame, generated, idn_mask, aligned.inverse)
    np.testing.assert_array_equal(frame, original)  # input not modified
    x0, y0, x1, y1 = footprint_box(aligned.inverse, 224, frame.shape)
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(out[outside], frame[outside])
    assert (out[y0:y1, x0:x1] != frame[y0:y1, x0:x1]).any()
    # and where the paste mask is zero inside the box, pixels are bit-identical as well (the
    # region's 1-px edge is left out: warp rounding differs between full-frame and box warps)
    weight = cv2.warpAffine(blend_mask(idn_mask), aligned.inverse, frame.shape[1::-1])
    zero = cv2.erode((weight == 0).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    np.testing.assert_array_equal(out[zero], frame[zero])


def test_in_place_paste(scene):
    frame, aligned, generated, idn_mask = scene
    expected = paste_back(frame, generated, idn_mask, aligned.inverse)
    target = frame.copy()
    assert paste_back(target, generated, idn_mask, aligned.inverse, out=target) is target
    np.testing.assert_array_equal(target, expected)


def test_round_trip_restores_the_face(scene):
    frame, aligned, _, _ = scene
    full_mask = np.ones((224, 224), np.float32)
    out = paste_back(frame, aligned.crop.astype(np.float32), full_mask, aligned.inverse)
    x0, y0, x1, y1 = footprint_box(aligned.inverse, 224, frame.shape)
    centre = (slice((y0 + y1) // 2 - 10, (y0 + y1) // 2 + 10), slice((x0 + x1) // 2 - 10, (x0 + x1) // 2 + 10))
    # random-noise frame: double bilinear resampling blurs, but the pasted crop stays correlated
    a = out[centre].astype(float).ravel()
    b = frame[centre].astype(float).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.3


def test_detail_keeps_the_frames_texture_and_takes_the_faces_low_band(scene):
    """detail > 0: a face that is the target plus a smooth change pastes as frame + that change;
    the frame's own texture (noise here) survives, where the official blend resamples it twice."""
    frame, aligned, _, _ = scene
    frame = frame // 2 + 64  # texture of +-64 levels around mid-grey: nothing clips below
    aligned = align_face(frame, apply(aligned.inverse, template(224)), 224)
    full_mask = np.ones((224, 224), np.float32)
    yy, xx = np.mgrid[:224, :224]
    smooth = (40.0 * np.exp(-((xx - 112) ** 2 + (yy - 112) ** 2) / (2 * 60.0**2))).astype(np.float32)
    face = aligned.crop.astype(np.float32) - smooth[..., None]  # darker in the middle, same texture
    kept = paste_back(frame, face, full_mask, aligned.inverse, crop=aligned.crop, detail=1.5)
    official = paste_back(frame, face, full_mask, aligned.inverse)
    x0, y0, x1, y1 = footprint_box(aligned.inverse, 224, frame.shape)
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    centre = (slice(cy - 8, cy + 8), slice(cx - 8, cx + 8))
    drop = frame[centre].astype(float) - kept[centre].astype(float)
    assert 25 < drop.mean() < 45  # the change arrived (40 at the very centre)
    # texture: kept minus its mean drop is the frame; the official paste is far from it
    kept_error = np.abs(drop - drop.mean()).mean()
    official_error = np.abs(frame[centre].astype(float) - official[centre] - drop.mean()).mean()
    assert kept_error < 3 and official_error > 4 * kept_error
    with pytest.raises(ValueError, match="crop"):
        paste_back(frame, face, full_mask, aligned.inverse, detail=1.5)


def test_limit_colour_keeps_the_luminance_pattern_and_drops_colour_and_mean_brightness():
    """chroma 0: the change turns grey with its BT.601 luminance unchanged; brightness 0: its mean
    luminance over the weights is 0; both 1: the change as it is; shares between mix linearly."""
    rng = np.random.default_rng()
    change = rng.normal(0, 20, (32, 32, 3)).astype(np.float32)
    weights = rng.random((32, 32)).astype(np.float32)
    luma = change @ LUMA_BGR
    assert limit_colour(change, weights) is change
    grey = limit_colour(change, weights, chroma=0.0)
    np.testing.assert_allclose(grey, np.repeat(luma[..., None], 3, axis=2), atol=1e-4)
    flat = limit_colour(change, weights, chroma=0.0, brightness=0.0)
    assert abs(float(((flat @ LUMA_BGR) * weights).sum() / weights.sum())) < 1e-3
    np.testing.assert_allclose(flat - grey, np.full_like(grey, (flat - grey)[0, 0, 0]), atol=1e-4)  # one shift
    half = limit_colour(change, weights, chroma=0.5)
    np.testing.assert_allclose(half, (change + grey) / 2, atol=1e-4)
    np.testing.assert_allclose(half @ LUMA_BGR, luma, atol=1e-3)


def test_colour_limited_paste_keeps_the_frames_colour(scene):
    """A face that is the target tinted red and darkened: chroma 0 pastes no tint, brightness 0
    no darkening either; the full paste brings both."""
    frame, aligned, _, _ = scene
    frame = frame // 2 + 64
    aligned = align_face(frame, apply(aligned.inverse, template(224)), 224)
    full_mask = np.ones((224, 224), np.float32)
    face = aligned.crop.astype(np.float32) + np.float32([-20, -20, 30])  # BGR: redder, a little darker
    x0, y0, x1, y1 = footprint_box(aligned.inverse, 224, frame.shape)
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    centre = (slice(cy - 8, cy + 8), slice(cx - 8, cx + 8))

    def shift(**options) -> np.ndarray:
        """The tint's mean shift, net of pasting the untinted crop (the noise frame's resampling
        through the crop and back moves a 16 x 16 mean by up to ~2 levels in the full paste)."""
        def mean(pasted_face: np.ndarray) -> np.ndarray:
            pasted = paste_back(frame, pasted_face, full_mask, aligned.inverse, crop=aligned.crop, **options)
            return pasted[centre].astype(float).reshape(-1, 3).mean(axis=0)

        return mean(face) - mean(aligned.crop.astype(np.float32))

    np.testing.assert_allclose(shift(), [-20, -20, 30], atol=1.5)
    luma = float(np.float32([-20, -20, 30]) @ LUMA_BGR)
    np.testing.assert_allclose(shift(chroma=0.0), [luma] * 3, atol=1.5)
    np.testing.assert_allclose(shift(chroma=0.0, brightness=0.0), [0, 0, 0], atol=1.0)
    with pytest.raises(ValueError, match="crop"):
        paste_back(frame, face, full_mask, aligned.inverse, chroma=0.0)


def test_target_eyes_cover_the_template_eyes_and_nothing_else():
    """The weights are 1 at both template eye points, fall to 0 within ~a third of the eye
    distance sideways and a sixth up and down (the brows, nose and cheeks stay the swap's)."""
    for size in (224, 256):
        eyes, points = target_eyes(size), template(size)
        distance = float(np.linalg.norm(points[1] - points[0]))
        for x, y in points[:2]:
            assert eyes[int(round(y)), int(round(x))] == pytest.approx(1.0, abs=1e-3)
            assert eyes[int(round(y)), int(round(x + 0.45 * distance))] < 0.01
            assert eyes[int(round(y - 0.3 * distance)), int(round(x))] < 0.01  # the brow
        assert eyes[int(points[2][1]), int(points[2][0])] == 0.0  # the nose tip
        assert not eyes.flags.writeable
    np.testing.assert_array_equal(paste_weights(224, "target"), 1.0 - target_eyes(224))
    assert paste_weights(224, "swap") is None and EYES == ("swap", "target")
    with pytest.raises(ValueError, match="eyes"):
        paste_weights(224, "source")


def test_target_eyes_paste_keeps_the_frames_eyes(scene):
    """eyes="target": the frame's own pixels at the eyes (whatever the face there), the swap's
    at the nose; the same in the change path (detail, chroma)."""
    frame, aligned, _, _ = scene
    face = np.full((224, 224, 3), 30, np.float32)
    full_mask = np.ones((224, 224), np.float32)
    eye_points = apply(aligned.inverse, template(224))
    for options in ({}, {"crop": aligned.crop, "detail": 1.5, "chroma": 0.0}):
        official = paste_back(frame, face, full_mask, aligned.inverse, **options)
        kept = paste_back(frame, face, full_mask, aligned.inverse, eyes="target", **options)
        for x, y in eye_points[:2]:
            window = (slice(int(y) - 1, int(y) + 2), slice(int(x) - 1, int(x) + 2))
            assert np.abs(kept[window].astype(int) - frame[window]).max() <= 1
            assert np.abs(official[window].astype(int) - frame[window]).max() > 20
        x, y = eye_points[2]
        nose = (slice(int(y) - 1, int(y) + 2), slice(int(x) - 1, int(x) + 2))
        np.testing.assert_array_equal(kept[nose], official[nose])
