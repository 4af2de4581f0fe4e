"""Reading and writing images so that nothing changes silently.

Decisions (the CLI's behaviour; see also docs/robustness.md; the byte-level container work,
headers, completeness checks and ICC/EXIF, is in :mod:`mfs_fast.media.image_formats`):

* **Formats by content.** PNG, JPEG, BMP, TIFF, WebP and GIF are recognised by their magic
  bytes, never by the file name. A file that is none of them is "not an image", and the error
  says whether its contents look like text or are unknown.
* **Damaged files are errors**, never swapped: a JPEG without its end-of-image marker or whose
  decoder reports corrupt data, a PNG with a bad checksum in a critical chunk or no IEND, and
  BMP/WebP/TIFF/GIF files shorter than their headers say all raise :class:`ImageError` (the
  CLI exits 2). A truncated JPEG would otherwise decode with a grey lower half.
* **Size is checked from the header** before anything is decoded: over
  :func:`~mfs_fast.media.image_formats.max_image_pixels` (default 128 megapixels, ``MFS_FAST_MAX_IMAGE_PIXELS`` to change)
  is an :class:`ImageError`, so a 100000 x 100000 header allocates nothing.
* **What the swap did not touch stays bit-identical.** :func:`read_image` keeps the stored
  pixels; the swapper works on an 8-bit upright BGR copy (:attr:`ImageFile.bgr`), and
  :meth:`ImageFile.restore` adds only its changes back to the stored pixels: 16-bit stays
  16-bit, grayscale stays grayscale (the new face is grey too), alpha is copied unchanged,
  and the EXIF orientation is undone so the pixels are stored as they were.
* **Metadata.** The ICC profile and EXIF of a JPEG or PNG are written to JPEG and PNG outputs
  (APP2/APP1 segments, iCCP/eXIf chunks), and so is an XMP packet when given (the swap's
  provenance note, :mod:`mfs_fast.watermark.metadata`). The EXIF thumbnail is removed: it would still show
  the original face. Other outputs (TIFF, WebP, BMP) get no metadata, with a warning.
* **Outputs that cannot hold the input** (16-bit or alpha in a JPEG, 16-bit in WebP/BMP) are
  converted with a :class:`UserWarning` saying what was lost.
* **Writes are atomic** (a hidden temporary next to the output, renamed when complete),
  created with mode 0666 minus the umask like any new file, and never over an input.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from ..atomic import PendingFile
from ..errors import ImageError, MediaError
from .image_formats import (ImageHeader, ImageMetadata, exif_orientation, exif_without_thumbnail, read_header,
                            with_metadata)

PathLike = str | os.PathLike
# output extensions -> format; what each can hold is in _CAPABILITIES
OUTPUT_EXTENSIONS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
                     ".webp": "webp", ".bmp": "bmp"}


def check_bgr_image(image: object, what: str = "an image") -> None:
    """Raise ImageError unless ``image`` is an 8-bit BGR array (H x W x 3)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"shape {image.shape}, dtype {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ImageError(f"expected {what} as an 8-bit BGR array (H x W x 3 uint8), got {got}")


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


RESTORE_ROWS = 256  # rows compared and patched at a time by ImageFile.restore

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
        out = self.pixels.copy()
        top = np.iinfo(out.dtype).max
        # a band of rows at a time: full-size comparison and int32 temporaries cost ~10x the
        # image (3.2 GB peak for a 108-megapixel photo); per band, only what changed is touched
        for start in range(0, new.shape[0], RESTORE_ROWS):
            rows = slice(start, start + RESTORE_ROWS)
            band_new, band_old = new[rows], old[rows]
            if self.header.grey:
                band_new, band_old = (cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_BGR2GRAY)
                                      for a in (band_new, band_old))
            changed = band_new != band_old
            if changed.ndim == 3:
                changed = changed.any(axis=2)
            cols = np.flatnonzero(changed.any(axis=0))
            if cols.size == 0:
                continue
            box = slice(cols[0], cols[-1] + 1)
            delta = band_new[:, box].astype(np.int32) - band_old[:, box]
            colour = out[rows, box] if out.ndim == 2 else out[rows, box][..., :3]
            if delta.ndim < colour.ndim:
                delta = delta[..., None]  # grey change applied to every colour channel
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


# format -> (holds 16 bit, holds alpha, takes our metadata)
_CAPABILITIES = {"png": (True, True, True), "tiff": (True, True, False), "jpeg": (False, False, True),
                 "webp": (False, True, False), "bmp": (False, True, False)}


def output_format(path: PathLike) -> str:
    """The image format an output path's extension asks for, or an ImageError listing them."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_EXTENSIONS:
        got = f"not {suffix}" if suffix else "and this name has none"
        raise ImageError(f"cannot write an image to {path}: an image output name ends in one of "
                         f"{', '.join(OUTPUT_EXTENSIONS)}, {got}")
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


def _checked_metadata(metadata: ImageMetadata | None, fmt: str, path: Path) -> ImageMetadata | None:
    """What of ``metadata`` goes into a ``fmt`` file (EXIF without its thumbnail), warning about the rest."""
    if metadata is None or not (metadata.icc or metadata.exif or metadata.xmp):
        return None
    if not _CAPABILITIES[fmt][2]:
        parts = (("the ICC profile and EXIF of the input", metadata.icc or metadata.exif),
                 ("the provenance note (XMP)", metadata.xmp))
        lost = " and ".join(what for what, there in parts if there)
        warnings.warn(f"{path}: not written to {fmt.upper()} files: {lost} (write .png or .jpg to keep them)",
                      stacklevel=3)
        return None
    exif = metadata.exif
    if exif is not None:
        exif = exif_without_thumbnail(exif)
        if exif is None:
            warnings.warn(f"{path}: the input's EXIF is damaged and is not copied", stacklevel=3)
    if metadata.exif and len(exif or b"") > 65533 - 8 and fmt == "jpeg":
        warnings.warn(f"{path}: the input's EXIF is too large for a JPEG segment and is not copied", stacklevel=3)
        exif = None
    return ImageMetadata(icc=metadata.icc, exif=exif, xmp=metadata.xmp)


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
        data = with_metadata(data, fmt, kept)
    write_atomically(path, data)
    return path


def refuse_inputs(path: PathLike, inputs: Iterable[PathLike], error: type[MediaError] = ImageError) -> None:
    """``error`` when ``path`` is one of ``inputs`` (after resolving links, so links and ../ tricks
    count) or a folder; :class:`~mfs_fast.media.writer.VideoWriter` refuses with VideoError."""
    path = Path(path)
    if path.is_dir():
        raise error(f"output {path} is a folder; give a file name")
    target = path.resolve()
    for source in inputs:
        if Path(source).resolve() == target:
            raise error(f"refusing to overwrite the input {source}; choose another output path")


def write_atomically(path: PathLike, data: bytes) -> None:
    """Write ``data`` through :class:`~mfs_fast.atomic.PendingFile` (a hidden temporary renamed
    onto ``path``, created under the umask, removed on any error or interrupt); OS errors become
    an ImageError naming the folder."""
    with PendingFile(path, error=ImageError) as pending:
        try:
            pending.path.write_bytes(data)
        except OSError as exc:
            raise ImageError(f"cannot write {path}: {exc.strerror or exc}") from None
        pending.commit()
