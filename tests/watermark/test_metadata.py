"""The provenance note: written into PNG, JPEG and video files, read back, absent elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import _astronaut_bgr
from mfs_fast.media import VideoWriter, read_image, write_image
from mfs_fast.media.image_formats import ImageMetadata
from mfs_fast.media.probe import probe_tags
from mfs_fast.watermark.metadata import VIDEO_TAGS, note_in_tags, note_in_xmp, with_note


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_images_carry_the_note_and_keep_their_exif(tmp_path, suffix):
    exif = b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"  # an empty IFD
    path = write_image(tmp_path / f"out{suffix}", _astronaut_bgr(), metadata=with_note(ImageMetadata(exif=exif)))
    image = read_image(path)
    assert note_in_xmp(image.header.xmp) == "made by mfs_fast 0.1.0, marked as a synthetic composite (IPTC)"
    assert image.header.exif == exif
    assert image.bgr.shape == (512, 512, 3)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_plain_images_have_no_note(tmp_path, suffix):
    assert note_in_xmp(read_image(write_image(tmp_path / f"out{suffix}", _astronaut_bgr())).header.xmp) is None


def test_formats_without_metadata_say_the_note_is_lost(tmp_path):
    with pytest.warns(UserWarning, match=r"not written to TIFF files: the provenance note \(XMP\)"):
        write_image(tmp_path / "out.tif", _astronaut_bgr(), metadata=with_note(None))


def test_videos_carry_the_note_in_their_tags(tmp_path):
    path = tmp_path / "out.mp4"
    with VideoWriter(path, 64, 48, 10, tags=VIDEO_TAGS) as writer:
        for value in (0, 80, 160):
            writer.write(np.full((48, 64, 3), value, np.uint8))
    assert note_in_tags(probe_tags(path)).startswith("made by mfs_fast 0.1.0")
    plain = tmp_path / "plain.mp4"
    with VideoWriter(plain, 64, 48, 10) as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert note_in_tags(probe_tags(plain)) is None
