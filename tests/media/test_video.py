"""Video I/O: frames, rate and exact size (odd sizes too) survive a round trip, audio packets are
copied bit for bit, inputs and existing outputs are never damaged, outputs get the umask's
permissions, a read-only folder is named (and a failed cleanup never hides the cause), and media
kinds are judged by content, not by name. Timing: test_video_timing.py; interrupts: test_signals.py.

Clips are generated here with the ffmpeg binary of imageio-ffmpeg (lavfi testsrc2 + sine); the real
clips of ../shared/assets/videos are used when that folder exists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_ASSETS
from sample_media import audio_md5, ffmpeg
from conftest import without_root_powers as _without_root_powers

from mfs_fast.errors import ImageError, MediaError, VideoError
from mfs_fast.media import (VideoInfo, VideoWriter, ffmpeg_exe, media_kind, probe_video, read_frames,
                            transcode)

ASSET_VIDEOS = SHARED_ASSETS / "videos"
FRAMES = 64


# ------------------------------------------------------------------------------------------- helpers


def make_clip(path: Path, size: str = "320x240", rate: str = "25", frames: int = FRAMES,
              audio: str | None = "aac", pattern: str = "testsrc2") -> Path:
    """A clip of ``frames`` frames, with a 440 Hz tone in ``audio`` codec (or none)."""
    sound = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"] if audio else []
    audio_out = ["-c:a", audio, "-shortest"] if audio else []
    source = f"{pattern}{':' if '=' in pattern else '='}size={size}:rate={rate}"
    ffmpeg("-f", "lavfi", "-i", source, *sound, "-frames:v", frames,
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p", *audio_out, path)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stream_lines(path: Path) -> list[str]:
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return [line.strip() for line in out.splitlines() if line.strip().startswith("Stream #")]


def frames_of(path: Path) -> np.ndarray:
    return np.stack(list(read_frames(path)))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def identity(frame: np.ndarray) -> np.ndarray:
    return frame


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "pal": make_clip(folder / "pal.mp4", "320x240", "25"),
        "ntsc_odd_half": make_clip(folder / "ntsc.mp4", "322x240", "30000/1001"),  # 322/2 is odd
        "silent": make_clip(folder / "silent.mp4", "320x240", "24", frames=20, audio=None),
    }


# ---------------------------------------------------------------------------------------- round trip


def check_round_trip(src: Path, dst: Path, max_mean_diff: float | None = 2.0) -> None:
    """Same frame count, exact fps, size, audio packets; frames close; the input untouched."""
    before = sha256(src)
    info = probe_video(src)
    stats = transcode(src, dst, identity, progress=False)
    out = probe_video(dst)
    assert (out.width, out.height, out.fps) == (info.width, info.height, info.fps)
    assert isinstance(out.fps, Fraction)
    assert out.audio_codecs == info.audio_codecs
    if info.has_audio:
        assert audio_md5(dst) == audio_md5(src)
    source, result = frames_of(src), frames_of(dst)
    assert len(result) == len(source) == stats.frames_in == stats.frames_out
    if max_mean_diff is not None:
        diff = mean_abs_diff(source, result)
        print(f"{src.name}: mean abs diff after the round trip {diff:.3f}")
        assert diff < max_mean_diff
    assert sha256(src) == before
    assert sorted(p.name for p in dst.parent.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("name, fps, size", [("pal", Fraction(25), (320, 240)),
                                             ("ntsc_odd_half", Fraction(30000, 1001), (322, 240))])
def test_round_trip_keeps_frames_rate_size_and_audio(clips, tmp_path, name, fps, size):
    info = probe_video(clips[name])
    assert (info.fps, (info.width, info.height), info.has_audio, info.audio_codec) == (fps, size, True, "aac")
    assert abs(info.frame_count - FRAMES) <= 1
    check_round_trip(clips[name], tmp_path / "out.mp4")


def test_clip_without_audio_gives_no_audio_stream(clips, tmp_path):
    check_round_trip(clips["silent"], tmp_path / "out.mp4")
    assert not probe_video(tmp_path / "out.mp4").has_audio
    assert not any("Audio:" in line for line in stream_lines(tmp_path / "out.mp4"))


def test_frames_are_bgr_exact_size_and_written_as_bgr(tmp_path):
    red = make_clip(tmp_path / "red.mp4", "64x48", "10", frames=5, audio=None, pattern="color=c=red")
    frames = frames_of(red)
    assert frames.shape == (5, 48, 64, 3) and frames.dtype == np.uint8
    assert np.all(np.abs(frames.reshape(-1, 3).mean(0) - (0, 0, 255)) < 4)
    blue = np.zeros((48, 64, 3), np.uint8)
    blue[..., 0] = 255
    with VideoWriter(tmp_path / "blue.mp4", 64, 48, 10) as writer:
        for _ in range(3):
            writer.write(blue)
    back = frames_of(tmp_path / "blue.mp4")
    assert back.shape == (3, 48, 64, 3) and mean_abs_diff(back, blue[None]) < 3
    assert "bt709" in stream_lines(tmp_path / "blue.mp4")[0]


def test_odd_size_is_kept_exactly(tmp_path):
    """161x121 cannot be 4:2:0: it is written as 4:4:4 at exactly that size, not cropped or padded."""
    frame = cv2.resize(np.arange(256, dtype=np.uint8).reshape(16, 16), (161, 121))[..., None].repeat(3, 2)
    frame[:, -1] = (0, 0, 255)  # the last column and row must survive
    frame[-1, :] = (255, 0, 0)
    with VideoWriter(tmp_path / "odd.mp4", 161, 121, Fraction(30000, 1001)) as writer:
        assert writer.pixel_format == "yuv444p"
        for _ in range(3):
            writer.write(frame)
    info = probe_video(tmp_path / "odd.mp4")
    assert (info.width, info.height, info.fps) == (161, 121, Fraction(30000, 1001))
    back = frames_of(tmp_path / "odd.mp4")
    assert back.shape == (3, 121, 161, 3)
    assert mean_abs_diff(back, frame[None]) < 2
    assert mean_abs_diff(back[:, :-1, -1], frame[None, :-1, -1]) < 4
    assert mean_abs_diff(back[:, -1], frame[None, -1]) < 4
    transcode(tmp_path / "odd.mp4", tmp_path / "again.mp4", identity, progress=False)
    again = probe_video(tmp_path / "again.mp4")
    assert (again.width, again.height) == (161, 121)


def test_rotation_metadata_gives_upright_frames(clips, tmp_path):
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation:v:0", 90, "-i", clips["pal"], "-c", "copy", rotated)
    info = probe_video(rotated)
    assert (info.width, info.height, info.rotation) == (240, 320, 90)
    upright, plain = frames_of(rotated), frames_of(clips["pal"])
    assert upright.shape == (FRAMES, 320, 240, 3)
    np.testing.assert_array_equal(upright[7], np.rot90(plain[7]))  # 90 degrees counter-clockwise
    transcode(rotated, tmp_path / "out.mp4", identity, progress=False)
    out = probe_video(tmp_path / "out.mp4")
    assert (out.width, out.height, out.rotation) == (240, 320, 0)


def test_progress_bar_counts_frames(clips, tmp_path, capsys):
    stats = transcode(clips["silent"], tmp_path / "out.mp4", identity, progress=True, refresh_every=5)
    assert "20/20" in capsys.readouterr().err
    assert stats.frames_out == 20 and stats.fps > 0


def test_pipelined_and_sequential_write_the_same_frames_and_time_each_stage(clips, tmp_path):
    """Stages in threads change nothing in the output: every frame through every stage, in order
    (a frame-numbered change shows a lost or swapped frame), and each stage is timed."""
    seen = []

    def mark(frame: np.ndarray) -> np.ndarray:
        seen.append(len(seen))
        marked = frame.copy()
        marked[:16, :16] = 16 * (seen[-1] % 16)
        return marked

    stages = [("mark", mark), ("flip", lambda frame: np.ascontiguousarray(frame[:, ::-1]))]
    outputs = {}
    for pipelined in (False, True):
        seen.clear()
        out = tmp_path / f"{pipelined}.mp4"
        stats = transcode(clips["pal"], out, stages, progress=False, pipelined=pipelined)
        outputs[pipelined] = frames_of(out)
        assert [t.name for t in stats.stages] == ["decode", "mark", "flip", "encode"]
        assert all(t.items == FRAMES for t in stats.stages) and len(stats.finished) == FRAMES
        assert all(t.seconds > 0 for t in stats.stages)
    np.testing.assert_array_equal(outputs[True], outputs[False])
    corner = outputs[True][:, 4:12, -12:-4].reshape(FRAMES, -1).mean(axis=1)
    assert np.abs(corner - 16 * (np.arange(FRAMES) % 16)).max() < 3


def test_reader_can_stop_early(clips):
    frames = read_frames(clips["pal"])
    first = next(frames)
    frames.close()
    assert first.shape == (240, 320, 3)


def test_damaged_video_warns_instead_of_losing_frames_silently(clips, tmp_path):
    faststart = tmp_path / "faststart.mp4"  # header first, so half a file still opens
    ffmpeg("-i", clips["pal"], "-c", "copy", "-movflags", "+faststart", faststart)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 2])
    assert media_kind(damaged) == "video"
    with pytest.warns(UserWarning, match="errors while decoding .*damaged.mp4"):
        count = sum(1 for _ in read_frames(damaged))
    assert 0 < count < FRAMES


# ------------------------------------------------------------------------------------------ failures


def test_failure_in_fn_leaves_nothing_and_keeps_existing_output(clips, tmp_path):
    def explode_at_10(frame, count=[0]):
        count[0] += 1
        if count[0] == 10:
            raise RuntimeError("boom")
        return frame

    out = tmp_path / "fresh.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        transcode(clips["pal"], out, explode_at_10, progress=False)
    assert list(tmp_path.iterdir()) == []

    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"previous result")
    with pytest.raises(VideoError, match="expected uint8"):
        transcode(clips["pal"], existing, lambda f: f[:-2], progress=False)
    assert existing.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["existing.mp4"]


def test_writer_errors_leave_no_temporary(tmp_path):
    frame = np.zeros((32, 48, 3), np.uint8)
    with pytest.raises(ValueError), VideoWriter(tmp_path / "a.mp4", 48, 32, 25) as writer:
        writer.write(frame)
        raise ValueError("caller failed")
    with pytest.raises(VideoError, match="no frames"), VideoWriter(tmp_path / "b.mp4", 48, 32, 25):
        pass
    with pytest.raises(VideoError, match="expected uint8"), VideoWriter(tmp_path / "c.mp4", 48, 32, 25) as writer:
        writer.write(frame.astype(np.float32))
    with pytest.raises(VideoError, match=r"\.avi"):
        VideoWriter(tmp_path / "d.avi", 48, 32, 25)
    dropped = VideoWriter(tmp_path / "e.mp4", 48, 32, 25)
    dropped.write(frame)
    del dropped  # never closed: aborted, not left half-written
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask, mode", [(0o027, 0o640), (0o002, 0o664)])
def test_outputs_follow_the_umask(clips, tmp_path, umask, mode):
    """Temporaries are not mkstemp's 0600: the finished file has 0666 minus the umask."""
    previous = os.umask(umask)
    try:
        transcode(clips["pal"], tmp_path / "with_audio.mp4", identity, progress=False)  # muxed temporary
        transcode(clips["silent"], tmp_path / "silent.mp4", identity, progress=False)  # encoder's temporary
    finally:
        os.umask(previous)
    assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {mode}


LOCKED_FOLDER = """
import os, sys
import numpy as np
from mfs_fast.errors import VideoError
from mfs_fast.media import VideoWriter

folder, case = sys.argv[1], sys.argv[2]
frame = np.zeros((48, 64, 3), np.uint8)
try:
    if case == "from_the_start":
        VideoWriter(f"{folder}/out.mp4", 64, 48, 25)
    elif case == "before_close":
        writer = VideoWriter(f"{folder}/out.mp4", 64, 48, 25)
        writer.write(frame)
        os.chmod(folder, 0o555)
        writer.close()
    else:
        with VideoWriter(f"{folder}/out.mp4", 64, 48, 25) as writer:
            writer.write(frame)
            os.chmod(folder, 0o555)
            raise RuntimeError("the real cause")
except (VideoError, RuntimeError) as error:
    print(f"{type(error).__name__}: {error}")
"""


@pytest.mark.parametrize("case", ["from_the_start", "before_close", "failing_body"])
def test_read_only_folder_is_named_and_cleanup_never_hides_the_cause(tmp_path, case):
    folder = tmp_path / "locked"
    folder.mkdir()
    if case == "from_the_start":
        folder.chmod(0o555)
    script = tmp_path / "write.py"
    script.write_text(LOCKED_FOLDER)
    try:
        proc = subprocess.run([*_without_root_powers(), sys.executable, str(script), str(folder), case],
                              capture_output=True, text=True, timeout=120)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    left = [p.name for p in folder.iterdir()]
    if case == "from_the_start":
        assert proc.stdout.strip() == (f"VideoError: cannot write to the folder {folder} (Permission denied): "
                                       f"choose a writable output path")
        assert left == []
        return
    if case == "before_close":
        assert proc.stdout.strip() == (f"VideoError: cannot save out.mp4 in the folder {folder} (Permission denied): "
                                       f"choose a writable output path")
    else:
        assert proc.stdout.strip() == "RuntimeError: the real cause"
    # the temporary could not be removed either: a warning names it, the cause above is what is raised
    assert len(left) == 1 and left[0].startswith(".out.mp4.") and left[0].endswith(".part")
    assert f"could not remove the unfinished temporary {folder / left[0]} (Permission denied)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_refuses_to_overwrite_an_input(clips, tmp_path):
    src = tmp_path / "in.mp4"
    shutil.copy(clips["pal"], src)
    before = sha256(src)
    with pytest.raises(VideoError, match="refusing to overwrite"):
        transcode(src, tmp_path / "sub" / ".." / "in.mp4", identity, progress=False)
    (tmp_path / "link.mp4").symlink_to(src)
    with pytest.raises(VideoError, match="refusing to overwrite"):
        VideoWriter(tmp_path / "link.mp4", 320, 240, 25, audio_from=src)
    assert sha256(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "link.mp4"]


def test_audio_the_container_cannot_hold(tmp_path):
    src = make_clip(tmp_path / "alaw.mkv", "64x48", "25", frames=10, audio="pcm_alaw")
    assert probe_video(src).audio_codec == "pcm_alaw"
    with pytest.raises(VideoError, match="pcm_alaw.*mkv"):
        transcode_strict(src, tmp_path / "strict.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alaw.mkv"]
    with pytest.warns(UserWarning, match="re-encoding the audio to AAC"):
        transcode(src, tmp_path / "out.mp4", identity, progress=False)
    assert probe_video(tmp_path / "out.mp4").audio_codec == "aac"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        transcode(src, tmp_path / "out.mkv", identity, progress=False)
    assert audio_md5(tmp_path / "out.mkv") == audio_md5(src)


def transcode_strict(src: Path, dst: Path) -> None:
    info = probe_video(src)
    with VideoWriter(dst, info.width, info.height, info.fps, audio_from=src, audio_fallback=False) as writer:
        for frame in read_frames(src):
            writer.write(frame)


# ----------------------------------------------------------------------------------------- media kind


@pytest.fixture(scope="module")
def media(clips, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    frame = next(read_frames(clips["pal"]))
    files = {"png": folder / "a.png", "jpeg": folder / "a.jpg"}
    cv2.imwrite(str(files["png"]), frame)
    cv2.imwrite(str(files["jpeg"]), frame)
    files["video_named_png"] = folder / "video.png"
    shutil.copy(clips["pal"], files["video_named_png"])
    files["image_named_mp4"] = folder / "image.mp4"
    shutil.copy(files["jpeg"], files["image_named_mp4"])
    files["empty"] = folder / "empty.mp4"
    files["empty"].touch()
    data = clips["pal"].read_bytes()
    files["truncated_video"] = folder / "truncated.mp4"
    files["truncated_video"].write_bytes(data[: len(data) // 2])
    png = files["png"].read_bytes()
    files["truncated_png"] = folder / "truncated.png"
    files["truncated_png"].write_bytes(png[: len(png) // 2])
    files["garbage"] = folder / "garbage.mp4"
    files["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["animated_gif"] = folder / "anim.gif"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=5", "-frames:v", 3, files["animated_gif"])
    files["still_gif"] = folder / "still.gif"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=5", "-frames:v", 1, files["still_gif"])
    files["audio_only"] = folder / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=d=0.2", files["audio_only"])
    files["missing"] = folder / "missing.mp4"
    return files


@pytest.mark.parametrize("name, expected", [
    ("png", "image"), ("jpeg", "image"), ("video_named_png", "video"), ("image_named_mp4", "image"),
    ("animated_gif", "video"), ("still_gif", "image"),
])
def test_media_kind_by_content(media, clips, name, expected):
    assert media_kind(media[name]) == expected


def test_media_kind_of_clips(clips):
    assert {media_kind(path) for path in clips.values()} == {"video"}


@pytest.mark.parametrize("name, error, message", [
    ("missing", MediaError, "not found"),
    ("empty", MediaError, "empty"),
    ("truncated_video", VideoError, "corrupt or truncated video"),
    ("truncated_png", ImageError, "corrupt or truncated"),
    ("garbage", MediaError, "neither an image nor a video"),
    ("audio_only", MediaError, "no video stream"),
])
def test_media_kind_errors_name_file_and_problem(media, name, error, message):
    with pytest.raises(error, match=message) as caught:
        media_kind(media[name])
    assert str(media[name]) in str(caught.value)


def test_probe_and_read_errors(media):
    with pytest.raises(VideoError, match="not found"):
        read_frames(media["missing"])
    with pytest.raises(VideoError, match="truncated.mp4"):
        probe_video(media["truncated_video"])
    with pytest.raises(VideoError, match="no video stream"):
        probe_video(media["audio_only"])


# ------------------------------------------------------------------------------------------ real clips


def shortest_asset_clip() -> Path:
    if not ASSET_VIDEOS.is_dir():
        pytest.skip(f"real clips not found at {ASSET_VIDEOS} (the shared assets folder is absent)")
    preferred = ASSET_VIDEOS / "talking_d3.mp4"
    if preferred.is_file():
        return preferred
    clips = sorted(ASSET_VIDEOS.glob("*.mp4"), key=lambda p: p.stat().st_size)
    if not clips:
        pytest.skip(f"no .mp4 clips in {ASSET_VIDEOS}")
    return clips[0]


def test_real_clip_round_trip_keeps_audio_bit_identical(tmp_path):
    src = shortest_asset_clip()
    info = probe_video(src)
    assert isinstance(info, VideoInfo) and info.has_audio, f"{src} should carry audio (see assets README)"
    check_round_trip(src, tmp_path / f"out_{src.name}", max_mean_diff=2.0)
