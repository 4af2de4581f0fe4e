"""mfs_fast.eval.appearance: the sharpness ratio and the eye/skin colour shifts on a real face
with known changes (blur, a tint on the eyes only)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import _astronaut_bgr

from mfs_fast.eval.appearance import appearance, region_masks


@pytest.fixture(scope="module")
def face():
    from mfs_fast.face import create_detector

    image = _astronaut_bgr()
    return image, max(create_detector("blazeface").detect(image), key=lambda f: f.area).landmarks


def test_an_unchanged_face_scores_ratio_one_and_no_shift(face):
    image, points = face
    look = appearance(image, image, points)
    assert look.sharpness_ratio == pytest.approx(1.0)
    assert look.eye_colour_shift == 0.0 and look.skin_colour_shift == 0.0


def test_blur_lowers_the_sharpness_ratio_in_order(face):
    image, points = face
    ratios = [appearance(cv2.GaussianBlur(image, (0, 0), sigma), image, points).sharpness_ratio
              for sigma in (0.8, 1.5, 3.0)]
    assert ratios == sorted(ratios, reverse=True)
    assert ratios[0] < 0.8 and ratios[-1] < 0.1
    sharpened = cv2.addWeighted(image, 2.0, cv2.GaussianBlur(image, (0, 0), 1.0), -1.0, 0)
    assert appearance(sharpened, image, points).sharpness_ratio > 1.2


def test_a_green_tint_on_the_eyes_shows_in_the_eyes_not_the_skin(face):
    image, points = face
    masks = region_masks(points, image.shape)
    assert masks["eyes"].sum() > 50 and masks["skin"].sum() > 200
    assert not (masks["eyes"] & masks["skin"]).any()
    tinted = image.copy()
    tinted[masks["eyes"]] = np.clip(tinted[masks["eyes"]].astype(int) + [-20, 40, -20], 0, 255).astype(np.uint8)
    look = appearance(tinted, image, points)
    assert look.eye_colour_shift > 10.0
    assert look.skin_colour_shift == 0.0


def test_different_sizes_are_undefined_not_an_error(face):
    image, points = face
    look = appearance(image[:-1], image, points)
    assert np.isnan(look.sharpness_ratio) and np.isnan(look.eye_colour_shift)
