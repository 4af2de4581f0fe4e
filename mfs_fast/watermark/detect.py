"""Finding the watermark in an image that may have been cropped, scaled, recompressed or re-toned.

Luma is high-passed and divided by its local contrast (edges and texture must not outweigh the
faint pattern), then cut into half-tile cells. A crop only shifts the tile cyclically, so one
FFT correlation per cell with the tag's part of the tile gives the sync score at every shift;
the marked region is unknown (a face in a large frame), so cell scores are summed over windows
of 1 to 3 tiles a side, starting every half tile, and over the whole image; the window and shift with the highest
z-score (against all other shifts of that window) win. The tile is also looked for at 3/4 and
1/2 of its size (downscaled copies).

``false_alarm`` is the chance that an unmarked image scores as high somewhere: the Gaussian tail
of the z-score times the number of (scale, window, shift) tried. The payload (version, user id)
is then read at the winning window and shift; it needs a stronger mark than the sync does, so a
weak but clear detection may report it as unreadable (CRC mismatch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .payload import TAG_BITS, Payload, decode, tag_signs
from .pattern import TILE, carriers

SCALES = (1.0, 0.75, 0.5)  # tile sizes looked for, relative to the marked one
WINDOWS = (2, 3, 4, 6)  # window sides in half tiles (1 to 3 tiles), besides the whole image
MIN_Z = 7.0  # sync z-score for "found"; see bench/watermark.py for the measured false-alarm rate
HIGH_PASS_SIGMA = 1.5  # pixels at scale 1
CONTRAST_SIGMA = 4.0
CONTRAST_FLOOR = 0.5  # grey levels: keeps flat areas from being amplified without bound
MIN_BLOCK_RMS = 0.05  # whitened RMS below which a cell counts as empty (a marked one has ~0.5)


@dataclass(frozen=True)
class Detection:
    """What :func:`detect` found. ``found``: the sync z-score reached :data:`MIN_Z`."""

    found: bool
    z: float  # sync z-score at the best scale, window and shift
    false_alarm: float  # probability that an unmarked image scores this high somewhere
    payload: Payload | None  # None when not found or not readable (CRC mismatch)
    scale: float

    @property
    def confidence(self) -> float:
        """1 - false-alarm probability."""
        return 1.0 - self.false_alarm


@dataclass
class _Best:
    z: float = -math.inf
    scale: float = 1.0
    size: int = TILE
    folded: np.ndarray | None = None
    shift: tuple[int, int] = (0, 0)


def _whitened(luma: np.ndarray, scale: float) -> np.ndarray:
    high = luma - cv2.GaussianBlur(luma, (0, 0), HIGH_PASS_SIGMA * scale)
    contrast = np.sqrt(cv2.GaussianBlur(high * high, (0, 0), CONTRAST_SIGMA * scale))
    return high / (contrast + np.float32(CONTRAST_FLOOR))


def _cells(plane: np.ndarray, size: int) -> np.ndarray:
    """``plane`` cut into half-tile cells, each placed where it falls in the tile (its position
    modulo ``size``) in an otherwise zero ``size`` x ``size`` array: (rows, cols, size, size).
    Summing any cells gives the folded tile of just that part of the image, so windows can start
    every half tile. Cells with next to no texture (flat or saturated: no mark survives there) are
    zeroed, so that their rounding noise cannot make a z-score of its own."""
    half = size // 2
    h, w = plane.shape
    rows, cols = -(-h // half), -(-w // half)
    padded = np.zeros((rows * half, cols * half), np.float32)
    padded[:h, :w] = plane
    cells = padded.reshape(rows, half, cols, half).swapaxes(1, 2)
    cells[np.sqrt(np.mean(cells ** 2, axis=(2, 3))) < MIN_BLOCK_RMS] = 0.0
    placed = np.zeros((rows, cols, size, size), np.float32)
    for r in (0, 1):
        for c in (0, 1):
            placed[r::2, c::2, r * half:(r + 1) * half, c * half:(c + 1) * half] = cells[r::2, c::2]
    return placed


def _window_sums(values: np.ndarray, k: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Sums of ``values`` (rows, cols, ...) over every k x k window of blocks, and their corners
    (added slice by slice, not by cumulative sums, so an empty window stays exactly zero)."""
    rows, cols = values.shape[:2]
    if k > rows or k > cols:
        return values[:0, 0], []
    sums = sum(values[i:rows - k + 1 + i, j:cols - k + 1 + j] for i in range(k) for j in range(k))
    corners = [(r, c) for r in range(rows - k + 1) for c in range(cols - k + 1)]
    return sums.reshape(-1, *values.shape[2:]), corners


def _tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _sync_template(size: int) -> np.ndarray:
    return np.tensordot(tag_signs(), carriers(size)[:TAG_BITS], axes=1)


def detect(image: np.ndarray) -> Detection:
    """Look for the mfs_fast watermark in a BGR (or grey) uint8 image."""
    luma = (image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)).astype(np.float32)
    best, tests = _Best(), 0
    for scale in SCALES:
        size = round(TILE * scale)
        if min(luma.shape) < size // 2:
            continue
        blocks = _cells(_whitened(luma, scale), size)
        rows, cols = blocks.shape[:2]
        template = np.conj(np.fft.rfft2(_sync_template(size)))
        scores = np.fft.irfft2(np.fft.rfft2(blocks) * template, s=(size, size))
        windows = [(rows, cols, scores.sum(axis=(0, 1))[None], [(0, 0)])]
        windows += [(k, k, *_window_sums(scores, k)) for k in WINDOWS if k * k < rows * cols]
        for height, width, maps, corners in windows:
            if not corners:
                continue
            tests += len(corners) * size * size
            flat = maps.reshape(len(maps), -1)
            spread = flat.std(axis=1, keepdims=True)
            z = np.where(spread > 0, (flat - flat.mean(axis=1, keepdims=True)) / np.maximum(spread, 1e-30), 0.0)
            window, at = np.unravel_index(int(np.argmax(z)), z.shape)
            if z[window, at] > best.z:
                r, c = corners[window]
                folded = blocks[r:r + height, c:c + width].sum(axis=(0, 1))
                best = _Best(float(z[window, at]), scale, size, folded, divmod(int(at), size))
    if best.folded is None:
        return Detection(False, 0.0, 1.0, None, 1.0)
    found = best.z >= MIN_Z
    payload = _read_payload(best) if found else None
    return Detection(found, best.z, min(1.0, tests * _tail(best.z)), payload, best.scale)


def _read_payload(best: _Best) -> Payload | None:
    """The payload bits at the sync's shift: each bit's carrier against the folded window."""
    aligned = np.roll(best.folded, (-best.shift[0], -best.shift[1]), axis=(0, 1))
    soft = np.tensordot(carriers(best.size), aligned, axes=((1, 2), (0, 1)))
    return decode(soft)
