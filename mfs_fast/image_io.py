"""Reading and writing images so that nothing changes silently.

Decisions (the CLI's behaviour; see also docs/robustness.md):

* **Formats by content.** PNG, JPEG, BMP, TIFF, WebP and GIF are recognised by their magic
  bytes, never by the file name. A file that is none of them is "not an image", and the error
  says whether its contents look like text or are unknown.
* **Damaged files are errors**, never swapped: a JPEG without its end-of-image marker or whose
  decoder reports corrupt data, a PNG with a bad checksum in a critical chunk or no IEND, and
  BMP/WebP/TIFF/GIF files shorter than their headers say all raise :class:`ImageError` (the
  CLI exits 2). A truncated JPEG would otherwise decode with a grey lower half.
* **Size is checked from the header** before anything is decoded: over
  :func:`max_image_pixels` (default 128 megapixels, ``MFS_FAST_MAX_IMAGE_PIXELS`` to change)
  is an :class:`ImageError`, so a 100000 x 100000 header allocates nothing.
* **What the swap did not touch stays bit-identical.** :func:`read_image` keeps the stored
  pixels; the swapper works on an 8-bit upright BGR copy (:attr:`ImageFile.bgr`), and
  :meth:`ImageFile.restore` adds only its changes back to the stored pixels: 16-bit stays
  16-bit, grayscale stays grayscale (the new face is grey too), alpha is copied unchanged,
  and the EXIF orientation is undone so the pixels are stored as they were.
* **Metadata.** The ICC profile and EXIF of a JPEG or PNG are written to JPEG and PNG outputs
  (APP2/APP1 segments, iCCP/eXIf chunks). The EXIF thumbnail is removed: it would still show
  the original face. Other outputs (TIFF, WebP, BMP) get no metadata, with a warning.
* **Outputs that cannot hold the input** (16-bit or alpha in a JPEG, 16-bit in WebP/BMP) are
  converted with a :class:`UserWarning` saying what was lost.
* **Writes are atomic** (a hidden temporary next to the output, renamed when complete),
  created with mode 0666 minus the umask like any new file, and never over an input.
"""

from __future__ import annotations

import os
import re
import secrets
import struct
import sys
import tempfile
import threading
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from .errors import ImageError

PathLike = str | os.PathLike
IMAGE_FORMATS = ("png", "jpeg", "bmp", "tiff", "webp", "gif")
# output extensions -> format; what each can hold is in _CAPABILITIES
OUTPUT_EXTENSIONS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
                     ".webp": "webp", ".bmp": "bmp"}
DEFAULT_MAX_PIXELS = 128_000_000
MAX_PIXELS_ENV = "MFS_FAST_MAX_IMAGE_PIXELS"
_SUPPORTED = "PNG, JPEG, BMP, TIFF, WebP or GIF"

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


def check_bgr_image(image: object, what: str = "an image") -> None:
    """Raise ImageError unless ``image`` is an 8-bit BGR array (H x W x 3)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"shape {image.shape}, dtype {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ImageError(f"expected {what} as an 8-bit BGR array (H x W x 3 uint8), got {got}")


# ------------------------------------------------------------------------------------------- sniffing


def image_format(head: bytes) -> str | None:
    """The image format named by a file's first bytes (one of :data:`IMAGE_FORMATS`), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return name
    return None


def looks_like_text(head: bytes) -> bool:
    """True when the bytes read as text (UTF-8 without control characters other than whitespace)."""
    if not head or b"\x00" in head:
        return False
    text = head.decode("utf-8", errors="ignore")
    printable = sum(ch.isprintable() or ch in "\t\n\r\f" for ch in text)
    return printable >= 0.95 * len(head)


def not_an_image(path: PathLike, head: bytes, video_too: bool = False) -> ImageError:
    """The error for a file that is not an image this project reads (nor a video, with
    ``video_too``), saying whether its contents look like text or are unknown."""
    contents = "text" if looks_like_text(head) else f"unknown, starting with {head[:8].hex(' ') or 'nothing'}"
    what, give = ("an image or a video", f"a {_SUPPORTED} image or a video") if video_too else \
        ("an image", f"a {_SUPPORTED} file")
    return ImageError(f"{path} is not {what} (contents are {contents}); give {give}")


def max_image_pixels() -> int:
    """The largest image (width x height) read: ``MFS_FAST_MAX_IMAGE_PIXELS`` or 128 megapixels."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if value is None:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise ImageError(f"{MAX_PIXELS_ENV} must be a positive whole number of pixels, not {value!r}")
    return limit


# ---------------------------------------------------------------------------------------- containers


class _Corrupt(Exception):
    """Internal: a container is inconsistent; becomes an ImageError that names the file."""


@dataclass(frozen=True)
class ImageHeader:
    """What an image file says about itself, read without decoding any pixels."""

    format: str
    width: int
    height: int
    grey: bool = False  # stored as grayscale (with or without alpha)
    icc: bytes | None = field(default=None, repr=False)  # ICC profile
    exif: bytes | None = field(default=None, repr=False)  # EXIF as TIFF bytes ("II*\0..." or "MM\0*...")
    notes: tuple[str, ...] = ()  # metadata that could not be used, said as warnings


class _Tiff:
    """Just enough TIFF (byte order, IFD entries, integer values) for TIFF headers and EXIF."""

    _SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 6: 1, 7: 1, 8: 2, 9: 4, 16: 8}  # type -> bytes per value

    def __init__(self, data: bytes) -> None:
        if data[:4] not in (b"II*\x00", b"MM\x00*"):
            raise _Corrupt("not a TIFF structure")
        self.data, self.order = data, "<" if data[:2] == b"II" else ">"

    def _unpack(self, fmt: str, at: int) -> tuple:
        try:
            return struct.unpack_from(self.order + fmt, self.data, at)
        except struct.error:
            raise _Corrupt(f"TIFF structure runs past the end (byte {at})") from None

    def first_ifd(self) -> int:
        return self._unpack("I", 4)[0]

    def entries(self, offset: int) -> dict[int, tuple[int, int, int]]:
        """tag -> (type, count, offset of the value field) for the IFD at ``offset``."""
        count = self._unpack("H", offset)[0]
        return {tag: (kind, n, offset + 2 + 12 * i + 8)
                for i in range(count) for tag, kind, n in [self._unpack("HHI", offset + 2 + 12 * i)]}

    def next_ifd_field(self, offset: int) -> int:
        """Byte position of the IFD's link to the next IFD."""
        return offset + 2 + 12 * self._unpack("H", offset)[0]

    def values(self, entry: tuple[int, int, int]) -> list[int]:
        kind, count, field_at = entry
        codes = {1: "B", 3: "H", 4: "I", 16: "Q"}
        if kind not in codes:
            raise _Corrupt(f"TIFF value of type {kind} where an integer was expected")
        size = self._SIZES[kind] * count
        at = field_at if size <= 4 else self._unpack("I", field_at)[0]
        if count > len(self.data) or at + size > len(self.data):
            raise _Corrupt(f"a TIFF value of {count} items runs past the end of the file")
        return list(self._unpack(f"{count}{codes[kind]}", at))

    def value(self, entries: dict, tag: int, default: int | None = None) -> int | None:
        return self.values(entries[tag])[0] if tag in entries and entries[tag][1] >= 1 else default


def _tiff_header(data: bytes) -> ImageHeader:
    tiff = _Tiff(data)
    ifd = tiff.entries(tiff.first_ifd())
    width, height = tiff.value(ifd, 256), tiff.value(ifd, 257)
    if width is None or height is None:
        raise _Corrupt("the TIFF has no ImageWidth/ImageLength")
    # every strip or tile must lie inside the file, else the file is truncated
    for offsets_tag, counts_tag in ((273, 279), (324, 325)):
        if offsets_tag in ifd and counts_tag in ifd:
            for start, size in zip(tiff.values(ifd[offsets_tag]), tiff.values(ifd[counts_tag])):
                if start + size > len(data):
                    raise _Corrupt("image data runs past the end of the file")
    photometric = tiff.value(ifd, 262, 2)
    return ImageHeader("tiff", width, height, grey=photometric in (0, 1))


def _png_header(data: bytes) -> ImageHeader:
    """Walk every chunk: critical chunks must have good CRCs and the file must reach IEND."""
    at, icc, exif, notes = 8, None, None, []
    width = height = colour = None
    while True:
        if at + 12 > len(data):
            raise _Corrupt("it ends before the IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, at)
        body = data[at + 8:at + 8 + length]
        if len(body) < length or at + 12 + length > len(data):
            raise _Corrupt(f"chunk {kind!r} runs past the end of the file")
        crc_ok = zlib.crc32(kind + body) == struct.unpack_from(">I", data, at + 8 + length)[0]
        critical = not kind[0] & 0x20
        if not crc_ok and critical:
            raise _Corrupt(f"chunk {kind.decode('latin1')!r} has a bad checksum")
        if at == 8:
            if kind != b"IHDR" or length < 13:
                raise _Corrupt("it does not start with an IHDR chunk")
            width, height, _, colour = struct.unpack_from(">IIBB", body)
        elif kind == b"iCCP" and crc_ok:
            icc = _png_icc(body, notes)
        elif kind == b"eXIf" and crc_ok:
            exif = body
        elif kind == b"IEND":
            return ImageHeader("png", width, height, grey=colour in (0, 4), icc=icc, exif=exif, notes=tuple(notes))
        at += 12 + length


_MAX_ICC_BYTES = 16 << 20


def _png_icc(body: bytes, notes: list[str]) -> bytes | None:
    """The ICC profile of an iCCP chunk (name, 0, method 0, zlib data), inflated to at most 16 MB."""
    name_end = body.find(b"\x00")
    try:
        if not 0 < name_end < 80 or body[name_end + 1:name_end + 2] != b"\x00":
            raise zlib.error("malformed iCCP chunk")
        inflater = zlib.decompressobj()
        profile = inflater.decompress(body[name_end + 2:], _MAX_ICC_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            raise zlib.error("the profile is truncated or over 16 MB")
        return profile
    except zlib.error as exc:
        notes.append(f"its ICC profile is damaged ({exc}); the output has none")
        return None


_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # a marker in entropy-coded data (not RSTn/stuffing)


def _jpeg_header(data: bytes) -> ImageHeader:
    """Walk the segments: size from the SOF, APP1 Exif and APP2 ICC; the file must reach EOI."""
    at, width, height, grey, exif, icc_parts = 2, None, None, False, None, {}
    while True:
        if at + 2 > len(data):
            raise _Corrupt("it ends before the end-of-image marker")
        if data[at] != 0xFF:
            raise _Corrupt(f"no marker at byte {at}")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xD9:
            break
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            at += 2
            continue
        if at + 4 > len(data):
            raise _Corrupt("it ends before the end-of-image marker")
        length = struct.unpack_from(">H", data, at + 2)[0]
        body = data[at + 4:at + 2 + length]
        if length < 2 or len(body) < length - 2:
            raise _Corrupt(f"segment 0x{marker:02x} runs past the end of the file")
        if marker in _JPEG_SOF and len(body) >= 6:
            height, width, components = struct.unpack_from(">HHB", body, 1)
            grey = components == 1
        elif marker == 0xE1 and body.startswith(b"Exif\x00\x00") and exif is None:
            exif = body[6:]
        elif marker == 0xE2 and body.startswith(b"ICC_PROFILE\x00") and len(body) >= 14:
            icc_parts[body[12]] = body[14:]
        at += 2 + length
        if marker == 0xDA:  # start of scan: skip the entropy-coded data to the next real marker
            found = _JPEG_MARKER.search(data, at)
            if found is None:
                raise _Corrupt("it ends inside the image data (no end-of-image marker)")
            at = found.start()
    if width is None or height is None:
        raise _Corrupt("no frame header (SOF) before the end of the image")
    icc = b"".join(icc_parts[k] for k in sorted(icc_parts)) if icc_parts else None
    return ImageHeader("jpeg", width, height, grey=grey, icc=icc, exif=exif)


def _bmp_header(data: bytes) -> ImageHeader:
    if len(data) < 26:
        raise _Corrupt("the header is incomplete")
    size, pixels_at, dib = struct.unpack_from("<I4xII", data, 2)
    if dib == 12:
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    if size > len(data) or pixels_at >= len(data):
        raise _Corrupt(f"the header says {size} bytes, the file has {len(data)}")
    return ImageHeader("bmp", abs(width), abs(height))


def _webp_header(data: bytes) -> ImageHeader:
    size = struct.unpack_from("<I", data, 4)[0] + 8
    if size > len(data) or len(data) < 30:
        raise _Corrupt(f"the RIFF header says {size} bytes, the file has {len(data)}")
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
    elif chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif chunk == b"VP8 ":
        width, height = (v & 0x3FFF for v in struct.unpack_from("<HH", data, 26))
    else:
        raise _Corrupt(f"unknown first chunk {chunk!r}")
    return ImageHeader("webp", width, height)


def _gif_header(data: bytes) -> ImageHeader:
    if len(data) < 14 or data.rstrip(b"\x00")[-1:] != b";":
        raise _Corrupt("it has no GIF trailer")
    width, height = struct.unpack_from("<HH", data, 6)
    return ImageHeader("gif", width, height)


_HEADERS: dict[str, Callable[[bytes], ImageHeader]] = {
    "png": _png_header, "jpeg": _jpeg_header, "bmp": _bmp_header, "tiff": _tiff_header, "webp": _webp_header,
    "gif": _gif_header,
}


def read_header(data: bytes, path: PathLike = "<bytes>") -> ImageHeader:
    """Format, size and metadata of an encoded image, checking it is complete and not too large.

    Raises :class:`ImageError` for non-images, damaged or truncated files and images over
    :func:`max_image_pixels`; decodes no pixels, so it is cheap and allocates nothing large.
    """
    fmt = image_format(data[:16])
    if not data:
        raise ImageError(f"{path} is empty (0 bytes), not an image")
    if fmt is None:
        raise not_an_image(path, data[:512])
    try:
        header = _HEADERS[fmt](data)
    except (_Corrupt, struct.error, IndexError, ValueError) as exc:
        raise ImageError(f"{path} is a corrupt or truncated {fmt.upper()} ({exc}); re-export or re-download it") \
            from None
    if header.width <= 0 or header.height <= 0:
        raise ImageError(f"{path} is a corrupt {fmt.upper()}: its header says {header.width}x{header.height} pixels")
    limit = max_image_pixels()
    if header.width * header.height > limit:
        raise ImageError(f"{path} is {header.width}x{header.height} pixels "
                         f"({header.width * header.height / 1e6:.0f} megapixels), over the limit of "
                         f"{limit / 1e6:g} megapixels; downscale it, or raise {MAX_PIXELS_ENV}")
    return header


def _read_bytes(path: PathLike) -> tuple[Path, bytes]:
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image not found: {path}")
    if not path.is_file():
        raise ImageError(f"{path} is not a regular file; give an image file")
    try:
        return path, path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None


def check_image_file(path: PathLike) -> ImageHeader:
    """:func:`read_header` of a file: a fast check (no decoding) that it is a complete image."""
    path, data = _read_bytes(path)
    return read_header(data, path)


# ---------------------------------------------------------------------------------------------- EXIF


def exif_orientation(exif: bytes | None) -> int:
    """The EXIF orientation (1..8; 1 = stored upright), 1 when absent or unreadable."""
    if not exif:
        return 1
    try:
        tiff = _Tiff(exif)
        value = tiff.value(tiff.entries(tiff.first_ifd()), 0x0112, 1)
    except (_Corrupt, struct.error):
        return 1
    return value if value in range(1, 9) else 1


def _exif_without_thumbnail(exif: bytes) -> bytes:
    """EXIF with IFD1 (the thumbnail, a small copy of the original picture) unlinked and blanked."""
    tiff = _Tiff(exif)
    first = tiff.first_ifd()
    link_at = tiff.next_ifd_field(first)
    second = tiff._unpack("I", link_at)[0]
    out = bytearray(exif)
    if second:
        ifd1 = tiff.entries(second)
        start, size = tiff.value(ifd1, 0x0201, 0), tiff.value(ifd1, 0x0202, 0)
        if start and size and start + size <= len(out):
            out[start:start + size] = bytes(size)
        out[link_at:link_at + 4] = bytes(4)
    return bytes(out)


# Transforms from stored to upright pixels per EXIF orientation (2, 3, 4, 5 and 7 are their own inverse).
_UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
_INVERSE = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}


# ---------------------------------------------------------------------------------------------- read


_decoder_lock = threading.Lock()


@contextmanager
def _decoder_messages() -> Iterator[list[str]]:
    """Collect what C libraries (libjpeg, libpng, OpenCV's log) print on stderr during the block,
    so their warnings become our errors or warnings instead of stray lines on the terminal."""
    lines: list[str] = []
    with _decoder_lock, tempfile.TemporaryFile() as sink:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = os.dup(2)
        except OSError:  # no fd 2 (daemon, embedded): nothing to capture
            saved = None
        if saved is None:
            yield lines
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line.strip() for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip())


# libjpeg's warnings for damaged data; it then fills in grey and returns an image
_DAMAGE = re.compile(r"Premature end of JPEG|Corrupt JPEG data|Invalid SOS|Bogus|libpng error|CRC error", re.I)


@dataclass
class ImageFile:
    """An image as stored in its file, plus the 8-bit upright BGR copy the swapper works on.

    ``pixels``: exactly as decoded (``cv2.IMREAD_UNCHANGED``): H x W (grayscale) or H x W x 3/4
    (BGR/BGRA), uint8 or uint16, in stored (not EXIF-rotated) orientation.
    """

    path: Path
    header: ImageHeader
    pixels: np.ndarray
    orientation: int = 1
    bgr: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.bgr = np.ascontiguousarray(_UPRIGHT[self.orientation](_to_bgr8(self.pixels)))

    @property
    def metadata(self) -> ImageMetadata:
        return ImageMetadata(icc=self.header.icc, exif=self.header.exif)

    def restore(self, swapped: np.ndarray) -> np.ndarray:
        """``swapped`` (an edited :attr:`bgr`) in this file's stored layout.

        Same orientation, depth and channels as :attr:`pixels`; each changed pixel gets the
        change of its 8-bit value (x257 at 16 bit, as grey for grayscale images); every other
        pixel, and the alpha channel, is the stored value, bit for bit.
        """
        check_bgr_image(swapped, "the swapped image")
        if swapped.shape != self.bgr.shape:
            raise ImageError(f"the swapped image is {swapped.shape}, the image read from {self.path} is "
                             f"{self.bgr.shape}")
        back = _UPRIGHT[_INVERSE[self.orientation]]
        new, old = back(swapped), back(self.bgr)
        if self.header.grey:
            new, old = (cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_BGR2GRAY) for a in (new, old))
        changed = new != old
        if changed.ndim == 3:
            changed = changed.any(axis=2)
        out = self.pixels.copy()
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        if rows.size == 0:
            return out
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        delta = new[box].astype(np.int32) - old[box]
        colour = out[box] if out.ndim == 2 else out[box][..., :3]
        if delta.ndim < colour.ndim:
            delta = delta[..., None]  # grey change applied to every colour channel
        top = np.iinfo(out.dtype).max
        colour[...] = np.clip(colour.astype(np.int32) + delta * (top // 255), 0, top)
        return out


def _to_bgr8(pixels: np.ndarray) -> np.ndarray:
    """8-bit BGR from stored pixels: 16 bit rounded to 8, grey expanded, alpha dropped."""
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    return pixels[..., :3]


def read_image(path: PathLike) -> ImageFile:
    """Read an image for swapping; any damage, an unsupported layout or an oversized header is an
    :class:`ImageError` naming the file and what to do. Metadata problems are warnings."""
    return decode_image(*reversed(_read_bytes(path)))


def decode_image(data: bytes, path: PathLike = "<bytes>") -> ImageFile:
    """:func:`read_image` of a file's contents (``path`` only names it in messages)."""
    path = Path(path)
    header = read_header(data, path)
    for note in header.notes:
        warnings.warn(f"{path}: {note}", stacklevel=3)
    with _decoder_messages() as messages:
        try:
            pixels, failure = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), None
        except cv2.error as exc:
            pixels, failure = None, str(exc).strip().splitlines()[-1]
    messages += [failure] if failure else []
    damage = [m for m in messages if _DAMAGE.search(m)]
    if damage or pixels is None:
        said = f" (decoder: {'; '.join((damage or messages)[:2])})" if damage or messages else ""
        raise ImageError(f"cannot decode {path}: a {header.format.upper()} header, but the data is corrupt or "
                         f"truncated{said}; re-export or re-download it")
    for message in messages:
        warnings.warn(f"{path}: the {header.format.upper()} decoder said: {message}", stacklevel=3)
    if pixels.dtype not in (np.uint8, np.uint16) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
        raise ImageError(f"{path} holds {pixels.dtype} pixels with {1 if pixels.ndim == 2 else pixels.shape[2]} "
                         f"channel(s); only 8- and 16-bit grey, BGR and BGRA images are read: convert it first")
    if pixels.shape[:2] != (header.height, header.width):
        raise ImageError(f"{path} is corrupt: its header says {header.width}x{header.height}, "
                         f"its data {pixels.shape[1]}x{pixels.shape[0]}")
    return ImageFile(path, header, pixels, exif_orientation(header.exif))


def read_bgr(path: PathLike) -> np.ndarray:
    """Read an image as 8-bit BGR (H x W x 3), upright (EXIF orientation applied), like
    ``cv2.imread``, but with :func:`read_image`'s checks."""
    return read_image(path).bgr


# --------------------------------------------------------------------------------------------- write


@dataclass(frozen=True)
class ImageMetadata:
    """Colour profile and camera data to carry from an input to an output."""

    icc: bytes | None = None
    exif: bytes | None = None  # TIFF bytes (no "Exif\\0\\0" prefix)


# format -> (holds 16 bit, holds alpha, takes our metadata)
_CAPABILITIES = {"png": (True, True, True), "tiff": (True, True, False), "jpeg": (False, False, True),
                 "webp": (False, True, False), "bmp": (False, True, False)}


def output_format(path: PathLike) -> str:
    """The image format an output path's extension asks for, or an ImageError listing them."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_EXTENSIONS:
        raise ImageError(f"cannot write an image to {path}: an image output name ends in one of "
                         f"{', '.join(OUTPUT_EXTENSIONS)}, not {suffix or 'no extension'}")
    return OUTPUT_EXTENSIONS[suffix]


def _fit(pixels: np.ndarray, fmt: str, path: Path) -> np.ndarray:
    """``pixels`` in a layout ``fmt`` can store, warning about what is lost."""
    deep, alpha, _ = _CAPABILITIES[fmt]
    if pixels.dtype == np.uint16 and not deep:
        warnings.warn(f"{path}: {fmt.upper()} holds 8 bits per channel; writing the 16-bit image at 8 bits "
                      f"(write .png or .tif to keep 16)", stacklevel=3)
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 4 and not alpha:
        warnings.warn(f"{path}: {fmt.upper()} has no alpha channel; transparency dropped (write .png to keep it)",
                      stacklevel=3)
        pixels = np.ascontiguousarray(pixels[..., :3])
    return pixels


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _with_metadata(encoded: bytes, fmt: str, metadata: ImageMetadata) -> bytes:
    """Insert ICC and EXIF into OpenCV's encoded JPEG (after SOI/APP0) or PNG (after IHDR)."""
    if fmt == "png":
        extra = b""
        if metadata.icc:
            extra += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(metadata.icc))
        if metadata.exif:
            extra += _png_chunk(b"eXIf", metadata.exif)
        end_of_ihdr = 8 + 12 + struct.unpack_from(">I", encoded, 8)[0]
        return encoded[:end_of_ihdr] + extra + encoded[end_of_ihdr:]
    segments = []
    if metadata.exif:
        segments.append(b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(metadata.exif)) + b"Exif\x00\x00" + metadata.exif)
    if metadata.icc:
        parts = [metadata.icc[i:i + 65519] for i in range(0, len(metadata.icc), 65519)]
        for number, part in enumerate(parts, 1):
            segments.append(b"\xff\xe2" + struct.pack(">H", 2 + 14 + len(part)) + b"ICC_PROFILE\x00"
                            + bytes([number, len(parts)]) + part)
    at = 2
    if encoded[2:4] == b"\xff\xe0":  # keep JFIF's APP0 first
        at = 4 + struct.unpack_from(">H", encoded, 4)[0]
    return encoded[:at] + b"".join(segments) + encoded[at:]


def _checked_metadata(metadata: ImageMetadata | None, fmt: str, path: Path) -> ImageMetadata | None:
    """What of ``metadata`` goes into a ``fmt`` file (EXIF without its thumbnail), warning about the rest."""
    if metadata is None or not (metadata.icc or metadata.exif):
        return None
    if not _CAPABILITIES[fmt][2]:
        warnings.warn(f"{path}: the ICC profile and EXIF of the input are not written to {fmt.upper()} files "
                      f"(write .png or .jpg to keep them)", stacklevel=3)
        return None
    exif = metadata.exif
    if exif is not None:
        try:
            exif = _exif_without_thumbnail(exif)
        except (_Corrupt, struct.error):
            warnings.warn(f"{path}: the input's EXIF is damaged and is not copied", stacklevel=3)
            exif = None
    if metadata.exif and len(exif or b"") > 65533 - 8 and fmt == "jpeg":
        warnings.warn(f"{path}: the input's EXIF is too large for a JPEG segment and is not copied", stacklevel=3)
        exif = None
    return ImageMetadata(icc=metadata.icc, exif=exif)


def write_image(path: PathLike, image: np.ndarray, inputs: Iterable[PathLike] = (),
                metadata: ImageMetadata | None = None) -> Path:
    """Encode ``image`` by the file extension (see :data:`OUTPUT_EXTENSIONS`) and write it atomically.

    ``image``: grey, BGR or BGRA, 8 or 16 bit (converted with a warning where the format cannot
    hold it). ``metadata`` (ICC, EXIF) goes into PNG and JPEG files. Refuses to write over any of
    ``inputs``; the file appears complete or not at all, with the umask's permissions.
    """
    path = Path(path)
    fmt = output_format(path)
    refuse_inputs(path, inputs)
    pixels = _fit(image, fmt, path)
    try:
        ok, encoded = cv2.imencode(path.suffix, pixels)
    except cv2.error:
        ok = False
    if not ok:
        raise ImageError(f"cannot encode a {image.dtype} {image.shape} array as {fmt.upper()} for {path}")
    data = encoded.tobytes()
    kept = _checked_metadata(metadata, fmt, path)
    if kept is not None:
        data = _with_metadata(data, fmt, kept)
    write_atomically(path, data)
    return path


def refuse_inputs(path: PathLike, inputs: Iterable[PathLike]) -> None:
    """ImageError when ``path`` is one of ``inputs`` (after resolving links) or a folder."""
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"output {path} is a folder; give a file name")
    target = path.resolve()
    for source in inputs:
        if Path(source).resolve() == target:
            raise ImageError(f"refusing to overwrite the input {source}; choose another output path")


def write_atomically(path: PathLike, data: bytes) -> None:
    """Write ``data`` to a hidden temporary next to ``path``, then rename it onto ``path``.

    The temporary is created like any new file (mode 0666 minus the umask, unlike ``mkstemp``'s
    0600) and removed on any error or interrupt. OS errors become an ImageError naming the folder.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"cannot create the folder {path.parent}: {exc.strerror or exc}; choose another output "
                         f"path") from None
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise ImageError(f"cannot write to the folder {path.parent}: {exc.strerror or exc}; choose another "
                         f"output path") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ImageError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
