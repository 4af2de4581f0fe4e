"""Adding the watermark to the swapped regions of a frame, in place and in well under a millisecond.

The tile (:mod:`.pattern`) is scaled to ``strength`` grey levels RMS, rounded, and split into
what to add and what to subtract; both are laid over a whole frame once per frame size (cached,
up to 4K), so marking a region is two saturating OpenCV additions on its pixels. The same change goes to
B, G and R, i.e. to the luma only (the detector reads luma; chroma is what video codecs squeeze
hardest). Overlapping regions are marked once.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

from .._version import __version__
from . import payload as payload_bits
from .pattern import tile

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (pixels, x1/y1 exclusive)
MAX_CACHED_PIXELS = 3840 * 2160  # larger frames (photos) build each region's pattern when marking it
DEFAULT_STRENGTH = 2.4  # grey levels RMS: 40.5 dB PSNR inside a marked region (measured: bench/watermark.py)


class Watermark:
    """Marks regions of BGR uint8 frames with the mfs_fast payload (this version, ``user_id``)."""

    def __init__(self, user_id: int = 0, strength: float = DEFAULT_STRENGTH) -> None:
        self.payload = payload_bits.Payload(".".join(__version__.split(".")[:2]), payload_bits.check_user_id(user_id))
        delta = np.rint(tile(payload_bits.encode(__version__, user_id)) * np.float32(strength))
        self._add = np.clip(delta, 0, 255).astype(np.uint8)
        self._subtract = np.clip(-delta, 0, 255).astype(np.uint8)
        self._planes: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None  # (size, add, subtract)

    def _frame_planes(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The add and subtract patterns over a whole frame (3 channels), built once per size (one
        tuple swapped at once, so threads marking frames of different sizes never mix them)."""
        planes = self._planes
        if planes is None or planes[0] != (height, width):
            size = self._add.shape[0]
            reps = (-(-height // size), -(-width // size))
            add, subtract = (np.ascontiguousarray(np.repeat(np.tile(p, reps)[:height, :width, None], 3, axis=2))
                             for p in (self._add, self._subtract))
            planes = self._planes = ((height, width), add, subtract)
        return planes[1], planes[2]

    def _region_planes(self, x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """The add and subtract patterns of one region, built on the spot (frames too large to cache)."""
        size = self._add.shape[0]
        rows, cols = np.arange(y0, y1) % size, np.arange(x0, x1) % size
        return tuple(np.ascontiguousarray(np.repeat(p[np.ix_(rows, cols)][..., None], 3, axis=2))
                     for p in (self._add, self._subtract))

    def mark(self, frame: np.ndarray, boxes: Iterable[Box]) -> np.ndarray:
        """Add the watermark inside ``boxes`` of ``frame`` (H x W x 3 uint8), in place; returns ``frame``."""
        height, width = frame.shape[:2]
        cached = self._frame_planes(height, width) if height * width <= MAX_CACHED_PIXELS else None
        for x0, y0, x1, y1 in disjoint(boxes):
            if cached is not None:
                add, subtract = cached[0][y0:y1, x0:x1], cached[1][y0:y1, x0:x1]
            else:
                add, subtract = self._region_planes(x0, y0, x1, y1)
            region = frame[y0:y1, x0:x1]
            region[...] = cv2.subtract(cv2.add(region, add), subtract)
        return frame


def disjoint(boxes: Iterable[Box]) -> list[Box]:
    """``boxes`` cut into non-overlapping boxes covering the same pixels (so none is marked twice)."""
    kept: list[Box] = []
    for box in boxes:
        pieces = [box]
        for other in kept:
            pieces = [piece for p in pieces for piece in _minus(p, other)]
        kept.extend(pieces)
    return kept


def _minus(box: Box, other: Box) -> Sequence[Box]:
    """The parts of ``box`` outside ``other`` (up to four boxes)."""
    x0, y0, x1, y1 = box
    a0, b0, a1, b1 = other
    if a0 >= x1 or a1 <= x0 or b0 >= y1 or b1 <= y0:
        return [box]
    parts = []
    if b0 > y0:
        parts.append((x0, y0, x1, b0))
    if b1 < y1:
        parts.append((x0, b1, x1, y1))
    top, bottom = max(y0, b0), min(y1, b1)
    if a0 > x0:
        parts.append((x0, top, a0, bottom))
    if a1 < x1:
        parts.append((a1, top, x1, bottom))
    return parts
