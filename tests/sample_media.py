"""Small sample files and probes shared by the media tests and the CLI tests (one home, importable
from any test folder: tests/ is on sys.path through its conftest)."""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np

from mfs_fast.media import ffmpeg_exe


def exif_bytes(orientation: int = 1, thumbnail: bytes = b"") -> bytes:
    """A little-endian EXIF/TIFF block: IFD0 with the orientation, and IFD1 pointing at ``thumbnail``."""
    ifd1 = 26
    ifd0 = (struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
            + struct.pack("<I", ifd1 if thumbnail else 0))
    data = b"II*\x00" + struct.pack("<I", 8) + ifd0
    if thumbnail:
        at = ifd1 + 2 + 24 + 4
        data += (struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, at)
                 + struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail)) + struct.pack("<I", 0) + thumbnail)
    return data


def png_with_size(width: int, height: int, idat: bytes = b"") -> bytes:
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat or zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def huge_headers() -> dict[str, bytes]:
    """Small files whose headers claim 100000 x 100000 pixels (10 gigapixels)."""
    jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    sof = jpeg.index(b"\xff\xc0")
    jpeg = jpeg[:sof + 5] + struct.pack(">HH", 50000, 50000) + jpeg[sof + 9:]  # 2.5 gigapixels (16-bit fields)
    bmp = bytearray(cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    struct.pack_into("<ii", bmp, 18, 100000, 100000)
    gif = bytearray(b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b"\x3b")
    webp = bytearray(cv2.imencode(".webp", np.zeros((8, 8, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes())
    webp[21:25] = ((16383) | (16383 << 14)).to_bytes(4, "little")  # VP8L: 16384 x 16384
    tiff = bytearray(cv2.imencode(".tif", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    return {"png": png_with_size(100000, 100000), "jpeg": jpeg, "bmp": bytes(bmp), "gif": bytes(gif), "webp": bytes(webp),
            "tiff": _tiff_with_size(bytes(tiff), 100000, 100000)}


def _tiff_with_size(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    ifd = struct.unpack_from("<I", out, 4)[0]
    for i in range(struct.unpack_from("<H", out, ifd)[0]):
        at = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", out, at)
        if tag in (256, 257):
            struct.pack_into("<HHII", out, at, tag, 4, 1, width if tag == 256 else height)
    return bytes(out)


def ffmpeg(*args: object) -> subprocess.CompletedProcess:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def audio_md5(path: Path) -> str:
    """MD5 of every audio packet, as stored (stream copy: nothing decoded)."""
    return ffmpeg("-i", path, "-map", "0:a", "-c", "copy", "-f", "md5", "-").stdout.strip()


def drifting_face_clip(path: Path, width: int, height: int, lefts: list[int], top: int, background: int) -> Path:
    """An ultrafast H.264 clip of the astronaut's face (260 x 220 px with some hair) over a grey
    background, its left edge at ``lefts[i]`` in frame i: a moving face any test can swap."""
    from conftest import _astronaut_bgr
    from mfs_fast.media import VideoWriter

    face = _astronaut_bgr()[40:300, 140:360]
    with VideoWriter(path, width, height, 30, preset="ultrafast") as writer:
        for left in lefts:
            frame = np.full((height, width, 3), background, np.uint8)
            frame[top:top + face.shape[0], left:left + face.shape[1]] = face
            writer.write(frame)
    return path
