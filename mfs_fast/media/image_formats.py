"""Image files at the byte level: format sniffing, sizes and completeness from the headers, and the
ICC profile and EXIF read from and written into JPEG and PNG containers. No pixel is decoded here
(that is :mod:`mfs_fast.media.image`), so everything here is cheap and allocates nothing large.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Callable

from ..errors import ImageError

PathLike = str | os.PathLike
IMAGE_FORMATS = ("png", "jpeg", "bmp", "tiff", "webp", "gif")
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
    text = head.decode("utf-8", errors="replace")
    if text.count("\ufffd") > 1:  # one may be a character cut off at the end of ``head``
        return False
    printable = sum(ch.isprintable() or ch in "\t\n\r\f" for ch in text)
    return printable >= 0.95 * len(text)


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
    xmp: bytes | None = field(default=None, repr=False)  # XMP packet (PNG iTXt, JPEG APP1)


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
    at, icc, exif, xmp, notes = 8, None, None, None, []
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
        elif kind == b"iTXt" and crc_ok and body.startswith(_PNG_XMP_KEY):
            xmp = _png_itxt_text(body)
        elif kind == b"IEND":
            return ImageHeader("png", width, height, grey=colour in (0, 4), icc=icc, exif=exif, notes=tuple(notes),
                               xmp=xmp)
        at += 12 + length


_MAX_ICC_BYTES = 16 << 20
_PNG_XMP_KEY = b"XML:com.adobe.xmp\x00"  # the iTXt keyword XMP goes under in PNG
_JPEG_XMP_KEY = b"http://ns.adobe.com/xap/1.0/\x00"  # the APP1 prefix of XMP in JPEG


def _png_itxt_text(body: bytes) -> bytes | None:
    """The text of an uncompressed iTXt chunk (keyword, 0, flag 0, method, language, 0, key, 0, text)."""
    keyword_end = body.find(b"\x00")
    if body[keyword_end + 1:keyword_end + 2] != b"\x00":  # compressed iTXt: not what we write
        return None
    language_end = body.find(b"\x00", keyword_end + 3)
    translated_end = body.find(b"\x00", language_end + 1)
    return body[translated_end + 1:] if language_end > 0 and translated_end > 0 else None


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
    at, width, height, grey, exif, xmp, icc_parts = 2, None, None, False, None, None, {}
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
        elif marker == 0xE1 and body.startswith(_JPEG_XMP_KEY) and xmp is None:
            xmp = body[len(_JPEG_XMP_KEY):]
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
    return ImageHeader("jpeg", width, height, grey=grey, icc=icc, exif=exif, xmp=xmp)


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


def exif_without_thumbnail(exif: bytes) -> bytes | None:
    """EXIF with IFD1 (the thumbnail, a small copy of the original picture) unlinked and blanked;
    None when the EXIF is too damaged to tell where the thumbnail is."""
    try:
        return _blank_thumbnail(exif)
    except (_Corrupt, struct.error):
        return None


def _blank_thumbnail(exif: bytes) -> bytes:
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


# ------------------------------------------------------------------------------------------ metadata


@dataclass(frozen=True)
class ImageMetadata:
    """Colour profile and camera data to carry from an input to an output, and an XMP packet
    (the provenance note of :mod:`mfs_fast.watermark.metadata`)."""

    icc: bytes | None = None
    exif: bytes | None = None  # TIFF bytes (no "Exif\\0\\0" prefix)
    xmp: bytes | None = None


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_metadata(encoded: bytes, fmt: str, metadata: ImageMetadata) -> bytes:
    """Insert ICC, EXIF and XMP into OpenCV's encoded JPEG (after SOI/APP0) or PNG (after IHDR)."""
    if fmt == "png":
        extra = b""
        if metadata.icc:
            extra += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(metadata.icc))
        if metadata.exif:
            extra += _png_chunk(b"eXIf", metadata.exif)
        if metadata.xmp:
            # uncompressed, no language, no translated keyword
            extra += _png_chunk(b"iTXt", _PNG_XMP_KEY + b"\x00\x00\x00\x00" + metadata.xmp)
        end_of_ihdr = 8 + 12 + struct.unpack_from(">I", encoded, 8)[0]
        return encoded[:end_of_ihdr] + extra + encoded[end_of_ihdr:]
    segments = []
    if metadata.exif:
        segments.append(b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(metadata.exif)) + b"Exif\x00\x00" + metadata.exif)
    if metadata.xmp:
        segments.append(b"\xff\xe1" + struct.pack(">H", 2 + len(_JPEG_XMP_KEY) + len(metadata.xmp)) + _JPEG_XMP_KEY
                        + metadata.xmp)
    if metadata.icc:
        parts = [metadata.icc[i:i + 65519] for i in range(0, len(metadata.icc), 65519)]
        for number, part in enumerate(parts, 1):
            segments.append(b"\xff\xe2" + struct.pack(">H", 2 + 14 + len(part)) + b"ICC_PROFILE\x00"
                            + bytes([number, len(parts)]) + part)
    at = 2
    if encoded[2:4] == b"\xff\xe0":  # keep JFIF's APP0 first
        at = 4 + struct.unpack_from(">H", encoded, 4)[0]
    return encoded[:at] + b"".join(segments) + encoded[at:]
