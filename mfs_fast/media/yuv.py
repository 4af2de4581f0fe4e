"""Frames cross the ffmpeg pipes as I420 (planar YUV 4:2:0, what H.264 files hold) where the C++
core can convert them, rather than as BGR that ffmpeg converts.

Why: the pipes then move half the bytes, and ffmpeg's own conversions (swscale, BGR out of the
decoder and into the encoder) cost it ~6 ms of CPU a 720p frame, where the core's take ~0.8 ms
(kernels/yuv.hpp). The results are within one level of the exact matrices (ffmpeg's default
decoding conversion is up to 3 levels off them). Anything else (another pixel format, full
range, an unusual matrix, no C++ core) goes through ffmpeg's conversion as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import native

# The matrices ffmpeg would use to turn a stream's YUV into RGB, by the colour space it states:
# unstated is BT.601 (ffmpeg's default), as are the two names BT.601 goes by.
_MATRICES = {"bt709": "bt709", "smpte170m": "bt601", "bt470bg": "bt601", "unknown": "bt601", "unspecified": "bt601"}


def i420_size(height: int, width: int) -> int:
    """Bytes of one I420 frame: Y, then Cb and Cr at half size (rounded up)."""
    return height * width + 2 * ((height + 1) // 2) * ((width + 1) // 2)


@dataclass(frozen=True)
class I420Decoding:
    """How to turn a stream's I420 frames into BGR: its matrix, limited (video) range."""

    matrix: str

    def to_bgr(self, planes: np.ndarray, height: int, width: int) -> np.ndarray:
        """A new H x W x 3 BGR frame from ``planes`` (I420 bytes)."""
        return native.require_native().i420_to_bgr(planes, height, width, self.matrix)


def i420_decoding(pixel_format: str | None, colour_space: str | None, colour_range: str | None) -> I420Decoding | None:
    """The I420 path for a stream decoded as ``pixel_format`` with this colour space and range,
    or None where ffmpeg's own conversion must stay (formats, ranges and matrices it does not cover)."""
    if not native.AVAILABLE or pixel_format != "yuv420p" or colour_range not in (None, "tv", "unknown"):
        return None
    matrix = _MATRICES.get(colour_space or "unknown")
    return I420Decoding(matrix) if matrix else None


def i420_encoding(width: int, height: int) -> bool:
    """Whether frames of this size go to the encoder as I420 (even sizes, the C++ core built)."""
    return native.AVAILABLE and width % 2 == 0 and height % 2 == 0


def bgr_to_i420(frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """BT.709 limited-range I420 of a BGR frame (even sizes), chroma from each 2 x 2 block's mean:
    what the encoder's BT.709 tags say, as ffmpeg's ``scale=out_color_matrix=bt709:flags=area+accurate_rnd``."""
    return native.require_native().bgr_to_i420(frame, "bt709", False, out)
