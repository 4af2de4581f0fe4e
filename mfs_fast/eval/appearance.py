"""What a swap did to the picture itself: detail kept (sharpness) and colour moved (eyes, skin).

Identity and pose scores do not see a soft, smeared face or greenish eyes; these do. Both
compare the result with the target on the *same* pixels, chosen from the target face's five
landmarks (left eye, right eye, nose, left and right mouth corner), so the result's own
detection plays no part:

- **sharpness ratio**: variance of the Laplacian of the grey result over that of the grey target,
  inside the inner face (the landmarks' box grown by 0.4 eye distances on every side). 1 means
  the target's own detail level; a blurred swap falls toward 0.
- **colour shift**: distance between the mean CIE Lab colours (L in 0..100) of result and target
  in a region: the eyes (discs of 0.18 eye distances around each eye point) and the skin (discs
  of 0.2 eye distances on the cheeks, halfway from each eye to its mouth corner, pushed 0.15 eye
  distances outward, and one on the forehead above the eyes' midpoint).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..preprocess import to_unit

INNER_MARGIN = 0.4  # eye distances around the landmarks' box
EYE_RADIUS = 0.18
SKIN_RADIUS = 0.2
CHEEK_OUTWARD = 0.15
FOREHEAD_UP = 0.45


@dataclass(frozen=True)
class Appearance:
    """Per-face appearance scores of a result against its target (NaN where undefined)."""

    sharpness_ratio: float
    eye_colour_shift: float
    skin_colour_shift: float


def _eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[1] - points[0]))


def inner_face_box(points: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the inner face, clipped to the image."""
    margin = INNER_MARGIN * _eye_distance(points)
    x0, y0 = np.floor(points.min(axis=0) - margin).astype(int)
    x1, y1 = np.ceil(points.max(axis=0) + margin).astype(int)
    h, w = shape[:2]
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def region_masks(points: np.ndarray, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Boolean masks of the eye and skin regions of one face (see the module docstring)."""
    points = np.asarray(points, np.float64).reshape(5, 2)
    d = _eye_distance(points)
    h, w = shape[:2]
    eyes = np.zeros((h, w), np.uint8)
    skin = np.zeros((h, w), np.uint8)
    for eye in points[:2]:
        cv2.circle(eyes, tuple(np.round(eye).astype(int)), max(1, round(EYE_RADIUS * d)), 1, -1)
    centre_x = points[:2, 0].mean()
    for eye, mouth in ((points[0], points[3]), (points[1], points[4])):
        cheek = (eye + mouth) / 2
        cheek[0] += np.sign(cheek[0] - centre_x) * CHEEK_OUTWARD * d
        cv2.circle(skin, tuple(np.round(cheek).astype(int)), max(1, round(SKIN_RADIUS * d)), 1, -1)
    eye_line = points[:2].mean(axis=0)
    up = eye_line - points[2]  # nose -> between the eyes: "up" in the face's own frame
    up /= max(np.linalg.norm(up), 1e-6)
    forehead = eye_line + up * FOREHEAD_UP * d
    cv2.circle(skin, tuple(np.round(forehead).astype(int)), max(1, round(SKIN_RADIUS * d)), 1, -1)
    skin[eyes > 0] = 0
    return {"eyes": eyes > 0, "skin": skin > 0}


def _laplacian_variance(grey: np.ndarray) -> float:
    return float(cv2.Laplacian(grey, cv2.CV_64F, ksize=3).var())


def sharpness_ratio(result: np.ndarray, target: np.ndarray, points: np.ndarray) -> float:
    """Laplacian variance of the result's inner face over the target's (same pixels)."""
    x0, y0, x1, y1 = inner_face_box(np.asarray(points, np.float64).reshape(5, 2), target.shape)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return float("nan")
    grey = [cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY) for image in (result, target)]
    reference = _laplacian_variance(grey[1])
    return _laplacian_variance(grey[0]) / reference if reference > 1e-9 else float("nan")


def mean_lab(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean CIE Lab (L 0..100) of a BGR uint8 image inside a mask."""
    lab = cv2.cvtColor(to_unit(image), cv2.COLOR_BGR2Lab)
    return lab[mask].mean(axis=0)


def colour_shift(result: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Lab distance between the mean colours of result and target inside ``mask``."""
    if mask.sum() < 4:
        return float("nan")
    return float(np.linalg.norm(mean_lab(result, mask) - mean_lab(target, mask)))


def appearance(result: np.ndarray, target: np.ndarray, points: np.ndarray) -> Appearance:
    """All appearance scores of one face (BGR uint8 images of the same size; the target face's
    five landmarks)."""
    if result.shape != target.shape:
        return Appearance(float("nan"), float("nan"), float("nan"))
    masks = region_masks(points, target.shape)
    return Appearance(sharpness_ratio(result, target, points), colour_shift(result, target, masks["eyes"]),
                      colour_shift(result, target, masks["skin"]))
