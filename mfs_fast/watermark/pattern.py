"""The spread-spectrum carrier: a 128 x 128 pixel tile, repeated over the marked region.

The tile is a 64 x 64 grid of 2-pixel chips, each a pseudo-random +1/-1 (seeded by the tag)
times the sign of the payload bit it carries: every bit is spread over 64 chips per tile, and a
region repeats the tile, so the detector adds all copies up (a repetition code decoded softly:
the more pixels, the surer). The chips are smoothed with a circular Gaussian: a band-limited
pattern that JPEG and H.264 keep better than sharp blocks, and that a 50 % downscale leaves
readable. The tile is anchored at the frame's origin, so tiles of several faces in one frame
line up and add up in the detector too.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .payload import PAYLOAD_BITS

CHIP = 2  # pixels per chip side
GRID = 64  # chips per tile side
TILE = CHIP * GRID  # 128 pixels
SMOOTH_SIGMA = 0.8  # pixels: the Gaussian that band-limits the chips
CODEC_PERIOD = 16  # pixels: the largest block grid of JPEG / H.264 (see codec_notch)
_SEED = 0x6D66735F  # "mfs_"


@lru_cache(maxsize=1)
def _chips() -> tuple[np.ndarray, np.ndarray]:
    """(pseudo-random signs, which payload bit each chip carries), both GRID x GRID."""
    rng = np.random.default_rng(_SEED)
    signs = rng.choice(np.array([-1.0, 1.0], np.float32), size=(GRID, GRID))
    owner = rng.permutation(np.arange(GRID * GRID) % PAYLOAD_BITS).reshape(GRID, GRID)
    return signs, owner


def _smooth(chip_field: np.ndarray, size: int) -> np.ndarray:
    """Chip fields (..., GRID, GRID) as ``size`` x ``size`` pixel tiles, circularly smoothed."""
    scale = size / TILE
    pixels = np.repeat(np.repeat(chip_field, size // GRID, axis=-2), size // GRID, axis=-1) if size % GRID == 0 \
        else np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_NEAREST)
                       for f in chip_field.reshape(-1, GRID, GRID)]).reshape(*chip_field.shape[:-2], size, size)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    sigma = SMOOTH_SIGMA * scale
    gain = np.exp(-2 * (np.pi * sigma) ** 2 * (fx ** 2 + fy ** 2)) * codec_notch(size)
    return np.fft.ifft2(np.fft.fft2(pixels) * gain).real.astype(np.float32)


def codec_notch(size: int) -> np.ndarray:
    """1, but 0 on the DFT rows and columns (of a ``size`` tile) of patterns that repeat every
    :data:`CODEC_PERIOD` pixels across or are constant along a line: where JPEG and H.264 block
    edges (4, 8, 16 px grids) and straight stripes put their energy. Neither the mark nor the
    detector uses them, so such artefacts of an unmarked image cannot look like the mark."""
    step = size // CODEC_PERIOD
    on_grid = (np.arange(size) % step) == 0
    return (~on_grid[:, None] & ~on_grid[None, :]).astype(np.float32)


def tile(bits: np.ndarray) -> np.ndarray:
    """The 128 x 128 float32 pattern for ``bits`` (64 values of +1/-1), unit RMS."""
    signs, owner = _chips()
    pattern = _smooth(signs * bits[owner], TILE)
    return pattern / np.float32(np.sqrt(np.mean(pattern ** 2)))


@lru_cache(maxsize=4)
def carriers(size: int = TILE) -> np.ndarray:
    """(64, size, size): each bit's own chips (signs, others 0) as a pixel tile of ``size`` (the
    tile seen at ``size / 128`` of the marked scale), for the detector's correlations."""
    signs, owner = _chips()
    fields = np.stack([np.where(owner == b, signs, 0.0) for b in range(PAYLOAD_BITS)]).astype(np.float32)
    result = _smooth(fields, size)
    result.setflags(write=False)
    return result
