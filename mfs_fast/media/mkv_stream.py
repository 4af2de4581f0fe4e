"""A minimal Matroska stream of raw frames (BGR or I420), each with its own timestamp, for ffmpeg's stdin.

Why: ffmpeg's ``rawvideo`` input has no timestamps (frame n is shown at n / rate), so a
variable-rate video piped that way comes out re-timed and its audio drifts. Matroska is the
simplest container ffmpeg reads from a pipe that carries a timestamp per frame: an EBML header,
a Segment of unknown size, one track (``V_UNCOMPRESSED``, fourcc ``BGR\\x18`` or ``I420``), then one Cluster
per frame holding one SimpleBlock. Timestamps are in nanoseconds (TimestampScale 1), so the
encoder, given a coarser time base, rounds them back to exact ticks.
"""

from __future__ import annotations

from typing import IO

_UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def _size(n: int) -> bytes:
    """EBML variable-length size (the all-ones value of each length is reserved for 'unknown')."""
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return ((1 << (7 * length)) | n).to_bytes(length, "big")
    raise ValueError(f"EBML element too large: {n} bytes")


def _element(element_id: bytes, payload: bytes) -> bytes:
    return element_id + _size(len(payload)) + payload


def _uint(element_id: bytes, value: int) -> bytes:
    return _element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


BGR24 = b"BGR\x18"  # packed B, G, R bytes
I420 = b"I420"  # planar Y, Cb, Cr, chroma at half width and height


def stream_header(width: int, height: int, frame_ns: int, fourcc: bytes = BGR24) -> bytes:
    """Everything before the first frame; ``frame_ns`` is the nominal frame duration (a rate hint
    for the encoder, not used for timing); ``fourcc`` the pixel layout (BGR24 or I420)."""
    ebml = _element(b"\x1a\x45\xdf\xa3", _uint(b"\x42\x86", 1) + _uint(b"\x42\xf7", 1) + _uint(b"\x42\xf2", 4)
                    + _uint(b"\x42\xf3", 8) + _element(b"\x42\x82", b"matroska") + _uint(b"\x42\x87", 4)
                    + _uint(b"\x42\x85", 2))
    info = _element(b"\x15\x49\xa9\x66", _uint(b"\x2a\xd7\xb1", 1) + _element(b"\x4d\x80", b"mfs_fast")
                    + _element(b"\x57\x41", b"mfs_fast"))
    video = _uint(b"\xb0", width) + _uint(b"\xba", height) + _element(b"\x2e\xb5\x24", fourcc)
    track = (_uint(b"\xd7", 1) + _uint(b"\x73\xc5", 1) + _uint(b"\x83", 1) + _element(b"\x86", b"V_UNCOMPRESSED")
             + _uint(b"\x9c", 0) + _uint(b"\x23\xe3\x83", max(1, frame_ns)) + _element(b"\xe0", video))
    return ebml + b"\x18\x53\x80\x67" + _UNKNOWN_SIZE + info + _element(b"\x16\x54\xae\x6b", _element(b"\xae", track))


def write_frame(out: IO[bytes], pixels: memoryview, pts_ns: int) -> None:
    """One Cluster at ``pts_ns`` (>= 0) holding ``pixels`` (one frame in the header's layout) as a key frame."""
    block_head = b"\x81\x00\x00\x80"  # track 1, timestamp relative to the cluster 0, key frame
    block = b"\xa3" + _size(len(block_head) + len(pixels)) + block_head
    timestamp = _uint(b"\xe7", pts_ns)
    out.write(b"\x1f\x43\xb6\x75" + _size(len(timestamp) + len(block) + len(pixels)) + timestamp + block)
    out.write(pixels)
