"""Paste a swapped aligned face back into the frame (the official post-processing).

The IDN's fusion mask is binarised (> 0.001), dilated 11x11, eroded 11x11 twice, box-blurred
7x7 and multiplied by a border fade (ones inside a 10 px margin, box-blurred 11x11); face and
mask are warped back with the inverse affine and blended. Only the face's footprint box in
the frame is touched: every pixel outside it stays bit-identical.

``detail > 0`` pastes only the *low frequencies* of the change: with ``crop`` the aligned target
the face was made from, ``change = G(face - crop)`` (``G`` a Gaussian of ``detail`` crop pixels)
is warped back and added, ``frame + mask * change``. The target's own fine texture (skin,
lashes, hair edges) then stays at the frame's full resolution, which a 224 crop and a soft
model cannot give back; identity, shape and colour come from the swapped face. The C++
pipeline core does the same (kernels/pipeline.cpp, blend_change).

``chroma < 1`` / ``brightness < 1`` paste only that share of the change's colour (its part
orthogonal to grey, BT.601 luminance kept) and of its mean luminance over the paste mask
(:func:`limit_colour`). Why: a small model repaints a face's colours badly (a source's grey
beard as a translucent grey wash, blue-grey eyes, pink casts), while the shape and shading that
carry identity live in the luminance pattern; with both at 0 the target keeps its own skin tone,
eye colour and exposure, as the classical swap keeps them. Both change the paste through the
change path (``frame + mask * change``) even with ``detail = 0``.

``eyes="target"`` leaves the target's own eyes (a feathered ellipse around each eye of the
alignment template, :func:`target_eyes`) out of the paste. Why: the starter model paints eyes
pale, blurred and grey-blue (held out: 4.7 Lab units of eye colour shift even with chroma 0),
while the target's eyes are sharp, the right colour and look where the target looks; the
eyes' position and size still follow the alignment, and the brows, lids' surroundings and the
rest of the face come from the swap. ``"swap"``: the official paste (the swap's eyes).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .align import template

_KERNEL = cv2.getStructuringElement(cv2.MORPH_RECT, (11, 11))


@lru_cache(maxsize=4)
def _border_fade(size: int) -> np.ndarray:
    fade = np.zeros((size, size), np.float32)
    fade[10:-10, 10:-10] = 1.0
    fade = cv2.blur(fade, (11, 11))
    fade.setflags(write=False)
    return fade


def blend_mask(idn_mask: np.ndarray) -> np.ndarray:
    """The official paste mask (float32, size x size) from the IDN's fusion mask."""
    mask = (idn_mask > 0.001).astype(np.float32)
    mask = cv2.dilate(mask, _KERNEL)
    mask = cv2.erode(mask, _KERNEL, iterations=2)
    mask = cv2.blur(mask, (7, 7))
    return mask * _border_fade(mask.shape[0])


EYES = ("swap", "target")  # whose eyes the paste shows
# The kept ellipse around each template eye point, in template eye distances: half-width and
# half-height (an eye opening is ~0.5 x 0.2 of the eye distance; the rest covers alignment
# error), and the Gaussian feather's sigma.
EYE_HALF_WIDTH, EYE_HALF_HEIGHT, EYE_FEATHER = 0.32, 0.16, 0.04


@lru_cache(maxsize=4)
def target_eyes(size: int) -> np.ndarray:
    """Weights (size x size float32, 0..1, read-only) of the target's eyes in the aligned crop."""
    points = template(size)
    distance = float(np.linalg.norm(points[1] - points[0]))
    eyes = np.zeros((size, size), np.float32)
    shift = 4  # sub-pixel centres and axes: cv2 takes them in 1/16 px fixed point
    for x, y in points[:2]:
        centre = (int(round(x * (1 << shift))), int(round(y * (1 << shift))))
        axes = (int(round(EYE_HALF_WIDTH * distance * (1 << shift))), int(round(EYE_HALF_HEIGHT * distance * (1 << shift))))
        cv2.ellipse(eyes, centre, axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA, shift)
    eyes = cv2.GaussianBlur(eyes, (0, 0), EYE_FEATHER * distance)
    eyes.setflags(write=False)
    return eyes


def paste_weights(size: int, eyes: str) -> np.ndarray | None:
    """Per-pixel weights of the swap in the paste mask (None: all 1, the official paste);
    read-only and made once per size (the Python paste asks for them for every face)."""
    if eyes not in EYES:
        raise ValueError(f"eyes must be one of {EYES}, got {eyes!r}")
    return None if eyes == "swap" else _swap_outside_the_eyes(size)


@lru_cache(maxsize=4)
def _swap_outside_the_eyes(size: int) -> np.ndarray:
    weights = 1.0 - target_eyes(size)
    weights.setflags(write=False)
    return weights


LUMA_BGR = np.array([0.114, 0.587, 0.299], np.float32)  # BT.601 luminance weights, BGR order


def limit_colour(change: np.ndarray, weights: np.ndarray, chroma: float = 1.0, brightness: float = 1.0) -> np.ndarray:
    """``change`` (S x S x 3 BGR float32) with only ``chroma`` of its colour and ``brightness`` of
    its mean luminance over ``weights`` (S x S); its luminance pattern kept whole."""
    if chroma == 1.0 and brightness == 1.0:
        return change
    luma = (change @ LUMA_BGR)[..., None]
    limited = luma + np.float32(chroma) * (change - luma)
    if brightness != 1.0:
        total = float(weights.sum())
        if total > 0:
            limited -= np.float32((1.0 - brightness) * float((luma[..., 0] * weights).sum()) / total)
    return limited


def footprint_box(inverse: np.ndarray, size: int, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Integer box (x0, y0, x1, y1) in the frame covering the warped-back crop, or None if outside."""
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inverse.T
    h, w = frame_shape[:2]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    return int(x0), int(y0), int(x1), int(y1)


def paste_back(frame: np.ndarray, face: np.ndarray, idn_mask: np.ndarray, inverse: np.ndarray,
               out: np.ndarray | None = None, *, crop: np.ndarray | None = None, detail: float = 0.0,
               chroma: float = 1.0, brightness: float = 1.0, eyes: str = "swap") -> np.ndarray:
    """Blend ``face`` (size x size x 3 BGR, float 0..255 or uint8) into ``frame``.

    Returns ``out`` (a copy of ``frame`` unless given; ``out=frame`` works in place). Only
    pixels inside the face's footprint box are written. ``detail``: keep the frame's detail
    finer than this many crop pixels, ``crop`` being the aligned target (same layout as
    ``face``); ``chroma``, ``brightness``: shares of the change's colour and mean brightness
    pasted; ``eyes``: "target" keeps the target's eyes (see the module docstring; detail 0,
    chroma and brightness 1, eyes "swap": the official blend).
    """
    if out is None:
        out = frame.copy()
    size = face.shape[0]
    box = footprint_box(inverse, size, frame.shape)
    if box is None:
        return out
    x0, y0, x1, y1 = box
    local = inverse.copy()
    local[:, 2] -= (x0, y0)  # warp straight into the box
    roi_size = (x1 - x0, y1 - y0)
    face = face.astype(np.float32, copy=False)
    mask = blend_mask(idn_mask)
    weights = paste_weights(size, eyes)
    if weights is not None:
        mask = mask * weights
    as_change = detail > 0 or chroma != 1.0 or brightness != 1.0
    if as_change:
        if crop is None or crop.shape != face.shape:
            raise ValueError(f"detail > 0, chroma or brightness < 1 need the aligned target crop of the face's "
                             f"shape {face.shape}")
        face = face - crop.astype(np.float32)  # the change
        if detail > 0:
            face = cv2.GaussianBlur(face, (0, 0), detail)  # low band only
        face = limit_colour(face, mask, chroma, brightness)
    warped_face = cv2.warpAffine(face, local, roi_size, flags=cv2.INTER_LINEAR)
    warped_mask = cv2.warpAffine(mask, local, roi_size, flags=cv2.INTER_LINEAR)[..., None]
    region = frame[y0:y1, x0:x1].astype(np.float32)
    if as_change:
        blended = region + warped_mask * warped_face
    else:
        blended = warped_face * warped_mask + region * (1.0 - warped_mask)
    out[y0:y1, x0:x1] = np.clip(blended, 0, 255).astype(np.uint8)  # truncation, as the official code
    return out
