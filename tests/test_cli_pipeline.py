"""Full-frame swapping from the command line: images and videos (audio kept), webcam loop."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import _astronaut_bgr
from mfs_fast.cli import main
from mfs_fast.media import VideoWriter, ffmpeg_exe, probe_video, read_frames
from sample_media import audio_md5

FRAMES = 24


def mfs(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mfs_fast", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A source photo, a target photo, and a 24-frame clip of a slowly moving face with audio."""
    folder = tmp_path_factory.mktemp("pipeline")
    photo = _astronaut_bgr()
    cv2.imwrite(str(folder / "source.png"), photo)
    target = cv2.flip(photo, 1)
    cv2.imwrite(str(folder / "target.jpg"), target)
    sound = folder / "sound.m4a"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "sine=frequency=330:duration=1", "-c:a", "aac", str(sound)], check=True)
    clip = folder / "clip.mp4"
    with VideoWriter(clip, 384, 384, 24, audio_from=sound) as writer:
        for t in range(FRAMES):
            shifted = np.roll(target, shift=(2 * t, t), axis=(0, 1))
            writer.write(np.ascontiguousarray(cv2.resize(shifted, (384, 384))))
    return {"folder": folder, "source": folder / "source.png", "target": folder / "target.jpg", "clip": clip,
            "target_array": target}


def test_swap_image(files, official_dir, tmp_path):
    out = tmp_path / "out.png"
    proc = mfs("swap", "--source", files["source"], "--target", files["target"], "--weights", official_dir, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "1 face(s) swapped" in proc.stdout
    result = cv2.imread(str(out))
    target = cv2.imread(str(files["target"]))
    changed = np.abs(result.astype(int) - target.astype(int)).max(axis=2) > 0
    assert 0.01 < changed.mean() < 0.5  # the face changed, the rest of the photo did not
    assert main(["verify", str(out)]) == 0  # marked as synthetic (tests/watermark/ checks the details)
    assert main(["verify", str(files["target"])]) == 1


def test_swap_video_keeps_frames_fps_size_and_audio(files, official_dir, tmp_path):
    clip, out = files["clip"], tmp_path / "swapped.mp4"
    before = sha256(clip)
    proc = mfs("swap", "--source", files["source"], "--target", clip, "--weights", official_dir, "-o", out,
               "--every", "4", "--quiet", "--stats", "--preset", "superfast", "--quality", "20")
    assert proc.returncode == 0, proc.stderr
    assert f"{FRAMES} frame(s)" in proc.stdout
    header, row, limit = proc.stdout.splitlines()[-3:]  # --stats: the stage table and what limits it
    assert header.split()[:8] == ["mode", "FPS", "ms", "per", "frame:", "decode", "detect", "swap"]
    assert row.startswith("pipelined") and row.endswith(" MB") and limit.startswith("busiest stage:")
    assert sha256(clip) == before  # input untouched
    src_info, out_info = probe_video(clip), probe_video(out)
    assert (out_info.width, out_info.height, out_info.fps) == (src_info.width, src_info.height, src_info.fps)
    assert sum(1 for _ in read_frames(out)) == sum(1 for _ in read_frames(clip)) == FRAMES
    assert out_info.has_audio and audio_md5(out) == audio_md5(clip)
    first_in, first_out = next(read_frames(clip)), next(read_frames(out))
    assert np.abs(first_in.astype(int) - first_out.astype(int)).mean() > 1.0
    assert main(["verify", str(out)]) == 0 and main(["verify", str(clip)]) == 1


def test_bench_pipeline_times_both_paths_side_by_side(files, tmp_path):
    proc = mfs("bench", "--pipeline", files["clip"], "--preset", "ultrafast")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"{FRAMES} frames" in lines[0] and "ultrafast" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert set(rows) == {"sequential", "pipelined"}
    assert all(float(row[1]) > 0 for row in rows.values())  # FPS
    live = lines[4].split()
    assert live[0] == "live" and float(live[1]) > 0 and "latency capture to output" in lines[4]
    assert lines[5].startswith("pipelined busiest stage:") and "ms in ffmpeg" in lines[5]
    busy = float(lines[5].split(": ")[-1].split(" of ")[0])  # cores kept busy: the process and its ffmpegs
    assert 0.05 < busy <= os.cpu_count() + 0.5
    proc = mfs("bench", "--pipeline", files["target"])
    assert proc.returncode == 2 and "not a video" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_errors(files, official_dir, tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 100, np.uint8))
    proc = mfs("swap", "--source", blank, "--target", files["target"], "--weights", official_dir, "-o", tmp_path / "o.png")
    assert proc.returncode == 2 and f"no face found in {blank}" in proc.stderr
    proc = mfs("swap", "--source", files["source"], "--target", files["clip"], "--weights", official_dir,
               "-o", files["clip"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    proc = mfs("swap", "--source", files["source"], "--target", text, "--weights", official_dir, "-o", tmp_path / "o.png")
    assert proc.returncode == 2 and str(text) in proc.stderr


def test_webcam_loop_on_a_clip(files, official_dir):
    proc = mfs("webcam", "--source", files["source"], "--camera", files["clip"], "--weights", official_dir,
               "--no-window", "--no-virtual-camera", "--max-frames", "6")
    assert proc.returncode == 0, proc.stderr
    assert "6 frame(s)" in proc.stdout


def test_webcam_window_without_gui_says_why(files, official_dir):
    from mfs_fast.webcam import gui_available

    if gui_available():
        pytest.skip("this OpenCV build has a GUI")
    proc = mfs("webcam", "--source", files["source"], "--camera", files["clip"], "--weights", official_dir,
               "--max-frames", "1")
    assert proc.returncode == 2 and "no GUI" in proc.stderr
