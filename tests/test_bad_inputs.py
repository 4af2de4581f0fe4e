"""Every bad input through the real CLI: one ``error:`` line naming the file or option and what to
do, exit status 2 (130 for Ctrl-C, 143 for SIGTERM), no traceback, no output or temporary left
behind, and the inputs untouched. docs/robustness.md lists the same cases.

Most cases run ``cli.main`` in this process (failing before any model loads, they take
milliseconds); the read-only folder and the signals need a real process.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import without_root_powers as _without_root_powers
from sample_media import huge_headers

from mfs_fast.cli import main
from mfs_fast.media import VideoWriter


def _face_photo(size: int = 256) -> np.ndarray:
    import skimage.data

    face = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[0:300, 90:390]
    return cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """One file per kind of bad input (plus a good photo and a short clip), in one folder."""
    folder = tmp_path_factory.mktemp("inputs")
    files = {name.replace(".", "_"): folder / name for name in (
        "photo.jpg", "truncated.jpg", "truncated.png", "text.jpg", "unknown.png", "empty.jpg", "huge.png",
        "huge.jpg", "tiny.png", "blank.png", "clip.mp4", "weights")}
    photo = cv2.imencode(".jpg", _face_photo())[1].tobytes()
    files["photo_jpg"].write_bytes(photo)
    files["truncated_jpg"].write_bytes(photo[: len(photo) // 2])
    png = cv2.imencode(".png", _face_photo())[1].tobytes()
    files["truncated_png"].write_bytes(png[: len(png) // 2])
    files["text_jpg"].write_text("this is a text file named like a photo\n" * 4)
    files["unknown_png"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["empty_jpg"].touch()
    files["huge_png"].write_bytes(huge_headers()["png"])
    files["huge_jpg"].write_bytes(huge_headers()["jpeg"])
    cv2.imwrite(str(files["tiny_png"]), np.full((7, 7, 3), 99, np.uint8))
    cv2.imwrite(str(files["blank_png"]), np.full((64, 64, 3), 127, np.uint8))
    with VideoWriter(files["clip_mp4"], 64, 64, 5) as writer:
        for _ in range(3):
            writer.write(cv2.resize(_face_photo(), (64, 64)))
    files["weights"].mkdir()
    return files


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# (case, arguments, exit status, text the one error line must hold). {photo_jpg} etc. are the
# paths of the inputs (dots as underscores), {out} a fresh empty output folder.
SWAP = ["swap", "--source", "{photo_jpg}"]
CASES = [
    ("truncated JPEG target", [*SWAP, "--target", "{truncated_jpg}", "-o", "{out}/o.png"], 2,
     ["{truncated_jpg}", "corrupt or truncated JPEG", "re-export or re-download"]),
    ("truncated PNG target", [*SWAP, "--target", "{truncated_png}", "-o", "{out}/o.png"], 2,
     ["{truncated_png}", "corrupt or truncated PNG"]),
    ("text file named .jpg", [*SWAP, "--target", "{text_jpg}", "-o", "{out}/o.png"], 2,
     ["{text_jpg} is not an image or a video (contents are text)"]),
    ("random bytes named .png", [*SWAP, "--target", "{unknown_png}", "-o", "{out}/o.png"], 2,
     ["{unknown_png} is not an image or a video (contents are unknown, starting with 5f 82"]),
    ("empty file", [*SWAP, "--target", "{empty_jpg}", "-o", "{out}/o.png"], 2, ["{empty_jpg}", "empty"]),
    ("missing target", [*SWAP, "--target", "{out}/nope.jpg", "-o", "{out}/o.png"], 2, ["{out}/nope.jpg", "not found"]),
    ("huge PNG header", [*SWAP, "--target", "{huge_png}", "-o", "{out}/o.png"], 2,
     ["{huge_png} is 100000x100000 pixels", "MFS_FAST_MAX_IMAGE_PIXELS"]),
    ("huge JPEG header", [*SWAP, "--target", "{huge_jpg}", "-o", "{out}/o.png"], 2,
     ["{huge_jpg} is 50000x50000 pixels", "downscale it"]),
    ("truncated source", ["swap", "--source", "{truncated_jpg}", "--target", "{photo_jpg}", "-o", "{out}/o.png"], 2,
     ["{truncated_jpg}", "corrupt or truncated JPEG"]),
    ("text reference", [*SWAP, "--target", "{photo_jpg}", "--reference", "{text_jpg}", "-o", "{out}/o.png"], 2,
     ["{text_jpg} is not an image (contents are text)"]),
    ("video as source", ["swap", "--source", "{clip_mp4}", "--target", "{photo_jpg}", "-o", "{out}/o.png"], 2,
     ["{clip_mp4} is not an image (contents are unknown"]),
    ("image target to .mp4", [*SWAP, "--target", "{photo_jpg}", "-o", "{out}/o.mp4"], 2,
     ["{out}/o.mp4", "ends in one of .png, .jpg", "not .mp4"]),
    ("unknown output extension", [*SWAP, "--target", "{photo_jpg}", "-o", "{out}/o.xyz"], 2,
     ["{out}/o.xyz", "not .xyz"]),
    ("video target to .png", [*SWAP, "--target", "{clip_mp4}", "-o", "{out}/o.png"], 2,
     ["{out}/o.png", ".mp4, .m4v, .mov, .mkv"]),
    ("output is the target", [*SWAP, "--target", "{photo_jpg}", "-o", "{photo_jpg}"], 2,
     ["refusing to overwrite the input {photo_jpg}"]),
    ("output is a folder", [*SWAP, "--target", "{photo_jpg}", "-o", "{out}"], 2,
     ["output {out} is a folder; give a file name"]),
    ("output without extension", [*SWAP, "--target", "{photo_jpg}", "-o", "{out}/swapped"], 2,
     ["{out}/swapped", "and this name has none"]),
    ("--every 0", [*SWAP, "--target", "{clip_mp4}", "-o", "{out}/o.mp4", "--every", "0"], 2,
     ["argument --every", "whole number >= 1, got 0"]),
    ("--every x", [*SWAP, "--target", "{clip_mp4}", "-o", "{out}/o.mp4", "--every", "x"], 2,
     ["argument --every", "expected a number, got 'x'"]),
    ("--similarity 5", [*SWAP, "--target", "{photo_jpg}", "-o", "{out}/o.png", "--similarity", "5"], 2,
     ["argument --similarity", "between -1 and 1, got 5.0"]),
    ("--similarity nan", [*SWAP, "--target", "{photo_jpg}", "-o", "{out}/o.png", "--similarity", "nan"], 2,
     ["argument --similarity", "between -1 and 1"]),
    ("--faces some", [*SWAP, "--target", "{photo_jpg}", "-o", "{out}/o.png", "--faces", "some"], 2,
     ["argument --faces", "invalid choice"]),
    ("--detector scrfd without a model", [*SWAP, "--target", "{photo_jpg}", "-o", "{out}/o.png", "--detector",
                                          "scrfd"], 2, ["scrfd", "--detector PATH.onnx", "MFS_FAST_SCRFD_MODEL"]),
    ("--detector missing .onnx", [*SWAP, "--target", "{photo_jpg}", "-o", "{out}/o.png", "--detector",
                                  "{out}/det.onnx"], 2, ["SCRFD model not found: {out}/det.onnx"]),
    ("--detector unknown", [*SWAP, "--target", "{photo_jpg}", "-o", "{out}/o.png", "--detector", "yolo"], 2,
     ["unknown face detector 'yolo'", "blazeface"]),
    ("--weights empty folder", [*SWAP, "--target", "{photo_jpg}", "-o", "{out}/o.png", "--weights", "{weights}"], 2,
     ["{weights} holds no weights", "mfs-fast convert"]),
    ("bench --batch 0", ["bench", "--batch", "0"], 2, ["argument --batch", "must be at least 1, got 0"]),
    ("info --size 300", ["info", "--size", "300"], 2, ["argument --size", "invalid choice"]),
    ("aligned output .gif", [*SWAP, "--aligned", "--target", "{photo_jpg}", "-o", "{out}/o.gif"], 2,
     ["{out}/o.gif", "not .gif"]),
    ("no command", [], 2, ["required: command"]),
]


@pytest.mark.parametrize("case, argv, status, says", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_error(inputs, tmp_path, capsys, case, argv, status, says):
    out = tmp_path / "out"
    out.mkdir()
    names = {**{name: str(path) for name, path in inputs.items()}, "out": str(out)}
    before = _digests(inputs["photo_jpg"].parent)
    assert main([a.format(**names) for a in argv]) == status
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error: " in lines[0] and lines[0].startswith("mfs-fast"), err
    for text in says:
        assert text.format(**names) in lines[0], (text.format(**names), lines[0])
    assert list(out.iterdir()) == [], "an output or temporary was left behind"
    assert _digests(inputs["photo_jpg"].parent) == before, "an input changed"


def test_tiny_target_passes_through_unchanged(inputs, tmp_path, capsys):
    """A 7x7 image holds no detectable face: written unchanged, exit 0 (like a video frame without a face)."""
    out = tmp_path / "o.png"
    assert main(["swap", "--source", str(inputs["photo_jpg"]), "--target", str(inputs["tiny_png"]),
                 "-o", str(out), "--backend", "torch"]) == 0, capsys.readouterr().err
    assert "0 face(s) swapped" in capsys.readouterr().out
    np.testing.assert_array_equal(cv2.imread(str(out), cv2.IMREAD_UNCHANGED),
                                  cv2.imread(str(inputs["tiny_png"]), cv2.IMREAD_UNCHANGED))


def test_source_without_a_face_names_it(inputs, tmp_path, capsys):
    assert main(["swap", "--source", str(inputs["blank_png"]), "--target", str(inputs["photo_jpg"]),
                 "-o", str(tmp_path / "o.png"), "--backend", "torch"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"mfs-fast: error: no face found in {inputs['blank_png']}"]
    assert list(tmp_path.iterdir()) == []


def _run_cli(*args: str, prefix: tuple[str, ...] = (), **popen) -> subprocess.Popen:
    return subprocess.Popen([*prefix, sys.executable, "-m", "mfs_fast", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def test_read_only_output_folder_is_named(inputs, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        proc = _run_cli("swap", "--source", str(inputs["photo_jpg"]), "--target", str(inputs["photo_jpg"]),
                        "-o", str(folder / "o.png"), prefix=_without_root_powers())
        _, err = proc.communicate(timeout=300)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 2, err
    assert err.strip().splitlines() == [f"mfs-fast: error: cannot write to the folder {folder} (Permission denied): "
                                        f"choose a writable output path with -o"]
    assert list(folder.iterdir()) == []


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """A clip of a face long enough (200 frames) to be stopped in the middle."""
    path = tmp_path_factory.mktemp("long") / "face.mp4"
    frame = _face_photo(160)
    with VideoWriter(path, 160, 160, 25, preset="ultrafast") as writer:
        for i in range(200):
            writer.write(np.roll(frame, i % 7, axis=1))
    return path


@pytest.mark.parametrize("sent, status, says", [
    (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
    (signal.SIGTERM, 143, "stopped by SIGTERM"),
], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_video_swap_leaves_nothing(inputs, long_clip, tmp_path, sent, status, says):
    """Ctrl-C and SIGTERM mid-video: the writer's temporaries are removed, one line, 130 / 143."""
    out = tmp_path / "out"
    out.mkdir()
    proc = _run_cli("swap", "--source", str(inputs["photo_jpg"]), "--target", str(long_clip), "-o",
                    str(out / "swapped.mp4"), "--quiet", "--backend", "torch")
    deadline = time.monotonic() + 240
    while not any(out.iterdir()):  # the writer's temporary appears once frames flow
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the swap never started writing"
        time.sleep(0.05)
    proc.send_signal(sent)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert err.strip().splitlines() == [f"mfs-fast: error: {says}; unfinished outputs were removed"]
    assert list(out.iterdir()) == []
