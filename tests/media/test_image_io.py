"""Images are never changed silently: damage is an error, and what a swap does not touch survives
bit for bit (alpha, 16 bit, grey, orientation, ICC profile, EXIF)."""

from __future__ import annotations

import os
import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest

from mfs_fast.errors import ImageError
from mfs_fast.media import check_image_file, read_bgr, read_image, write_image
from mfs_fast.media.image_formats import ImageMetadata, looks_like_text, read_header
from sample_media import exif_bytes, huge_headers, png_with_size


def test_exif_orientation_matches_opencv_and_round_trips(tmp_path):
    """All 8 EXIF orientations: ``bgr`` is upright exactly as cv2.imread shows it, and restore()
    puts the pixels back in stored orientation, so the copied EXIF still describes them."""
    stored = cv2.resize(np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8), (40, 24),
                        interpolation=cv2.INTER_NEAREST)
    for suffix in (".jpg", ".png"):
        for orientation in range(1, 9):
            path = tmp_path / f"o{orientation}{suffix}"
            write_image(path, stored, metadata=ImageMetadata(exif=exif_bytes(orientation)))
            image = read_image(path)
            assert image.orientation == orientation
            np.testing.assert_array_equal(image.bgr, cv2.imread(str(path)), err_msg=f"{suffix} {orientation}")
            np.testing.assert_array_equal(image.restore(image.bgr), image.pixels)


def _paint(image, value=(10, 200, 40)):
    """A swap stand-in: a coloured square in the upright 8-bit picture."""
    edited = image.bgr.copy()
    edited[4:12, 6:20] = value
    return edited


def test_alpha_is_carried_untouched(tmp_path):
    rng = np.random.default_rng(1)
    bgra = rng.integers(0, 256, (16, 24, 4), dtype=np.uint8)
    write_image(tmp_path / "in.png", bgra)
    image = read_image(tmp_path / "in.png")
    write_image(tmp_path / "out.png", image.restore(_paint(image)))
    out = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (16, 24, 4)
    np.testing.assert_array_equal(out[..., 3], bgra[..., 3])
    np.testing.assert_array_equal(out[4:12, 6:20, :3], np.broadcast_to((10, 200, 40), (8, 14, 3)))
    outside = np.ones((16, 24), bool)
    outside[4:12, 6:20] = False
    np.testing.assert_array_equal(out[outside], bgra[outside])


def test_sixteen_bit_stays_sixteen_bit_outside_the_change(tmp_path):
    rng = np.random.default_rng(2)
    deep = rng.integers(0, 65536, (16, 24, 3), dtype=np.uint16)
    write_image(tmp_path / "in.png", deep)
    image = read_image(tmp_path / "in.png")
    assert image.bgr.dtype == np.uint8
    out = image.restore(_paint(image))
    assert out.dtype == np.uint16
    outside = np.ones((16, 24), bool)
    outside[4:12, 6:20] = False
    np.testing.assert_array_equal(out[outside], deep[outside])  # bit for bit, not via 8 bits
    inside = out[4:12, 6:20].astype(np.int64)
    expected = deep[4:12, 6:20].astype(np.int64) + (np.array((10, 200, 40)) - image.bgr[4:12, 6:20]) * 257
    np.testing.assert_array_equal(inside, np.clip(expected, 0, 65535))


def test_restore_works_band_by_band_with_the_same_result_and_bounded_memory(tmp_path, monkeypatch):
    """restore() compares and patches a few rows at a time: edits spread over several bands
    (each with its own column extent, one crossing a band edge) give exactly the whole-image
    formula, in a rotated 16-bit file, and the temporaries stay a small multiple of one band."""
    import tracemalloc

    from mfs_fast.media import image as image_module

    monkeypatch.setattr(image_module, "RESTORE_ROWS", 8)
    rng = np.random.default_rng(4)
    deep = rng.integers(0, 65536, (40, 30, 3), dtype=np.uint16)  # stored layout, shown rotated
    write_image(tmp_path / "in.png", deep, metadata=ImageMetadata(exif=exif_bytes(6)))
    image = read_image(tmp_path / "in.png")
    edited = image.bgr.copy()
    for top, left, value in ((0, 2, 250), (5, 20, 3), (14, 7, 128), (29, 0, 60)):
        edited[top:top + 4, left:left + 5] = value
    out = image.restore(edited)
    back = lambda a: np.rot90(a, 1)  # undo orientation 6 (shown = stored turned 90 deg clockwise)
    delta = back(edited).astype(np.int64) - back(image.bgr)
    np.testing.assert_array_equal(out, np.clip(deep.astype(np.int64) + delta * 257, 0, 65535))
    big = read_image(_write_big(tmp_path / "big.png"))  # 2000 x 1500 BGR: 9 MB
    edited = big.bgr.copy()
    edited[100:1900, 100:1400] //= 2
    monkeypatch.setattr(image_module, "RESTORE_ROWS", 64)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    restored = big.restore(edited)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert peak < restored.nbytes * 1.5, peak  # the copy it returns plus a band's temporaries
    np.testing.assert_array_equal(restored, edited)


def _write_big(path):
    image = cv2.resize(np.random.default_rng(5).integers(0, 256, (30, 40, 3), dtype=np.uint8), (1500, 2000))
    write_image(path, image)
    return path


@pytest.mark.parametrize("layout", ["grey", "grey+alpha"])
def test_grey_in_grey_out(tmp_path, layout):
    """A grayscale file gets a grey face, even when stored with alpha (read as 4 channels)."""
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (16, 24), dtype=np.uint8)
    path = tmp_path / "in.png"
    if layout == "grey":
        write_image(path, grey)
    else:  # OpenCV cannot write grey+alpha: build the PNG (colour type 4) by hand
        alpha = rng.integers(0, 256, (16, 24), dtype=np.uint8)
        rows = b"".join(b"\x00" + np.dstack([grey, alpha])[r].tobytes() for r in range(16))
        chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 24, 16, 8, 4, 0, 0, 0))
                         + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    image = read_image(path)
    assert image.header.grey
    out = image.restore(_paint(image))
    colour = out if out.ndim == 2 else out[..., :3]
    if colour.ndim == 3:
        assert (colour == colour[..., :1]).all(), "a grey image got a coloured face"
        np.testing.assert_array_equal(out[..., 3], alpha)
        colour = colour[..., 0]
    expected_grey = cv2.cvtColor(np.uint8([[[10, 200, 40]]]), cv2.COLOR_BGR2GRAY)[0, 0]
    assert (colour[4:12, 6:20] == expected_grey).all()
    outside = np.ones((16, 24), bool)
    outside[4:12, 6:20] = False
    np.testing.assert_array_equal(colour[outside], grey[outside])


def test_icc_and_exif_are_copied_without_the_thumbnail(tmp_path):
    """ICC and EXIF go from a JPEG to PNG and JPEG outputs; the EXIF thumbnail (a small copy of the
    original face) does not. Checked with Pillow as an independent reader."""
    Image = pytest.importorskip("PIL.Image")
    icc = b"\x00\x00\x02\x00fake-icc-profile" + bytes(range(256)) * 300  # > one 64 KB JPEG segment
    exif = exif_bytes(6, thumbnail=b"ORIGINAL-FACE-THUMBNAIL")
    source = tmp_path / "in.jpg"
    write_image(source, np.full((8, 8, 3), 90, np.uint8), metadata=ImageMetadata(icc=icc, exif=exif))
    image = read_image(source)
    assert image.header.icc == icc and image.orientation == 6
    for suffix in (".jpg", ".png"):
        out = write_image(tmp_path / f"out{suffix}", image.restore(image.bgr), metadata=image.metadata)
        with Image.open(out) as pil:
            assert pil.info.get("icc_profile") == icc
            assert pil.getexif().get(0x0112) == 6
        data = out.read_bytes()
        assert b"ORIGINAL-FACE-THUMBNAIL" not in data
        assert read_header(data).exif is not None


def test_outputs_that_cannot_hold_the_input_warn(tmp_path):
    deep_alpha = np.full((8, 8, 4), 40000, np.uint16)
    with pytest.warns(UserWarning) as caught:
        write_image(tmp_path / "out.jpg", deep_alpha)
    said = " ".join(str(w.message) for w in caught)
    assert "8 bits" in said and "transparency dropped" in said
    assert cv2.imread(str(tmp_path / "out.jpg"), cv2.IMREAD_UNCHANGED).shape == (8, 8, 3)
    with pytest.warns(UserWarning, match="not written to TIFF"):
        write_image(tmp_path / "out.tif", deep_alpha, metadata=ImageMetadata(exif=exif_bytes()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_image(tmp_path / "out.png", deep_alpha, metadata=ImageMetadata(exif=exif_bytes()))


def test_writes_follow_the_umask_and_leave_no_temporaries(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_image(tmp_path / "out.png", np.zeros((4, 4, 3), np.uint8))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


@pytest.mark.parametrize("fmt", ["png", "jpeg", "bmp", "gif", "webp", "tiff"])
def test_huge_dimensions_fail_from_the_header(tmp_path, fmt):
    path = tmp_path / f"huge.{fmt}"
    path.write_bytes(huge_headers()[fmt])
    with pytest.raises(ImageError, match=r"megapixels\), over the limit of 128 megapixels.*MFS_FAST_MAX_IMAGE_PIXELS"):
        check_image_file(path)
    with pytest.raises(ImageError, match="over the limit"):
        read_image(path)


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    write_image(path, np.zeros((10, 10, 3), np.uint8))
    monkeypatch.setenv("MFS_FAST_MAX_IMAGE_PIXELS", "99")
    with pytest.raises(ImageError, match="10x10 pixels"):
        read_image(path)
    monkeypatch.setenv("MFS_FAST_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ImageError, match="must be a positive whole number"):
        read_image(path)


def _photo_jpeg() -> bytes:
    import skimage.data

    return cv2.imencode(".jpg", cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9, 0.999])
def test_truncated_jpeg_is_an_error_not_a_grey_half(tmp_path, fraction):
    data = _photo_jpeg()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:int(len(data) * fraction)])
    assert cv2.imread(str(path)) is not None  # OpenCV alone would decode it (grey fill)
    with pytest.raises(ImageError, match="corrupt or truncated JPEG"):
        read_bgr(path)


def test_damaged_jpeg_data_is_an_error(tmp_path):
    """Data cut from the middle of the scan: libjpeg warns ("Corrupt JPEG data") and fills in;
    we turn the warning into an error instead of swapping a damaged picture."""
    data = _photo_jpeg()
    scan = data.index(b"\xff\xda")
    path = tmp_path / "holed.jpg"
    path.write_bytes(data[:scan + 2000] + data[scan + 30000:])
    with pytest.raises(ImageError, match=r"corrupt or truncated.*decoder: .*Corrupt JPEG data"):
        read_image(path)


def test_damaged_png_is_an_error(tmp_path):
    data = bytearray(cv2.imencode(".png", np.random.default_rng(4).integers(0, 256, (32, 32, 3), np.uint8))[1])
    path = tmp_path / "a.png"
    path.write_bytes(bytes(data[:-12]))  # no IEND
    with pytest.raises(ImageError, match="ends before the IEND chunk"):
        read_image(path)
    idat = data.index(b"IDAT")
    data[idat + 40] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="'IDAT' has a bad checksum"):
        read_image(path)


def test_not_an_image_says_what_it_is(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("shopping list: milk, eggs\n")
    with pytest.raises(ImageError, match=r"notes.jpg is not an image \(contents are text\)"):
        read_image(text)
    binary = tmp_path / "blob.png"
    binary.write_bytes(bytes(range(200)))
    with pytest.raises(ImageError, match=r"not an image \(contents are unknown, starting with 00 01 02"):
        read_image(binary)
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(ImageError, match="empty"):
        read_image(empty)


def test_text_is_recognised_in_any_script():
    assert looks_like_text("名前: 山田\nnotes, été\n".encode()[:20])  # cut inside a character
    assert not looks_like_text(bytes(range(256))) and not looks_like_text(b"\x89PNG\r\n\x1a\n")
