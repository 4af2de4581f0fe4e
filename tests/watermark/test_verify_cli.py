"""``mfs-fast verify``: finds both marks in what ``mfs-fast swap`` writes (image, aligned crop,
video), never in the originals; exit 0 marked, 1 not marked, 2 bad file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import _astronaut_bgr
from mfs_fast.cli import main
from mfs_fast.media import VideoWriter
from mfs_fast.watermark import Watermark
from mfs_fast.watermark.metadata import VIDEO_TAGS


def verify(path, capsys, *options) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["verify", str(path), *options])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify")
    path = folder / "astronaut.jpg"
    cv2.imwrite(str(path), _astronaut_bgr())
    return path


def test_aligned_swap_output_is_marked(aligned_pair, official_dir, tmp_path, capsys):
    """(--no-watermark's warning and unmarked output: tests/test_cli.py's parity test.)"""
    _, _, source_png, target_png = aligned_pair
    marked = tmp_path / "marked.png"
    assert main(["swap", "--aligned", "--source", str(source_png), "--target", str(target_png),
                 "--weights", str(official_dir), "-o", str(marked), "--watermark-id", "5"]) == 0
    status, out, _ = verify(marked, capsys)
    assert status == 0, out
    assert "watermark: found" in out and "payload: mfs_fast 0.1, user id 5" in out
    assert "metadata: made by mfs_fast 0.1.0" in out
    status, out, _ = verify(target_png, capsys)
    assert status == 1 and "watermark: not found" in out and "no mfs_fast provenance note" in out


def test_original_photo_is_not_marked(photo, capsys):
    status, out, _ = verify(photo, capsys)
    assert status == 1 and f"{photo}: watermark: not found" in out


def test_video_frames_are_sampled(tmp_path, capsys):
    frame = cv2.resize(_astronaut_bgr(), (256, 256), interpolation=cv2.INTER_AREA)
    marked = Watermark().mark(frame.copy(), [(0, 0, 256, 256)])
    path = tmp_path / "clip.mp4"
    other = cv2.flip(frame, 0)  # unmarked, and unlike the marked frames (nothing for H.264 to carry over)
    with VideoWriter(path, 256, 256, 10, tags=VIDEO_TAGS) as writer:
        for image in (other, marked, marked, other, marked, other):
            writer.write(np.ascontiguousarray(image))
    status, out, _ = verify(path, capsys, "--frames", "6")
    assert status == 0, out
    assert "watermark: found in 3 of 6 sampled frames" in out and "comment tag" in out


@pytest.mark.parametrize("content, says", [(b"just some text\n", "is not an image or a video"),
                                           (b"", "empty"), (None, "not found")])
def test_bad_files_are_one_line_errors(tmp_path, capsys, content, says):
    path = tmp_path / "file.png"
    if content is not None:
        path.write_bytes(content)
    status, out, err = verify(path, capsys)
    assert status == 2 and out == ""
    assert err.startswith("mfs-fast: error:") and says in err and len(err.strip().splitlines()) == 1
