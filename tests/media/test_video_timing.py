"""Video timing: every frame keeps its presentation time through transcode, so a variable-rate
(phone-style) clip keeps its rate and its lip sync, and a constant rate stays exact.

Clips are made here with the ffmpeg binary of imageio-ffmpeg (160x120, a few seconds). Times are
measured with ffmpeg itself (``showinfo``, ``framecrc``, ``silencedetect``), not with the code
under test.
"""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from mfs_fast.media import VideoWriter, ffmpeg_exe, probe_video, read_timed_frames, transcode

# three segments at 24, 30 and 15 fps, 1.5 s each: 36 + 45 + 23 frames, like a phone's variable rate
SEGMENTS = "[a][b][c]concat=n=3:v=1:a=0"
VFR_FRAMES = 36 + 45 + 23


def ffmpeg(*args: object) -> subprocess.CompletedProcess:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def make_vfr_clip(path: Path, source: str = "testsrc2", extra: str = "",
                  audio: str = "sine=frequency=440:sample_rate=44100:d=4.5") -> Path:
    """24, 30 and 15 fps segments concatenated (time base 1/1000000, frames keep their own times)."""
    sep = ":" if "=" in source else "="
    parts = ";".join(f"{source}{sep}s=160x120:r={rate}:d=1.5[{name}]" for name, rate in zip("abc", (24, 30, 15)))
    graph = f"{parts};{SEGMENTS}{extra}[v];{audio}[s]"
    ffmpeg("-filter_complex", graph, "-map", "[v]", "-map", "[s]", "-c:v", "libx264", "-preset", "veryfast",
           "-pix_fmt", "yuv420p", "-fps_mode", "passthrough", "-c:a", "aac", path)
    return path


def frame_times(path: Path) -> list[Fraction]:
    """Exact presentation time of every decoded frame, from ffmpeg's showinfo."""
    err = ffmpeg("-copyts", "-i", path, "-map", "0:v:0", "-vf", "showinfo=checksum=0", "-f", "null", "-").stderr
    base = re.search(r"config in time_base: (\d+)/(\d+)", err)
    tick = Fraction(int(base[1]), int(base[2]))
    return [int(pts) * tick for pts in re.findall(r"\bn: *\d+ pts: *(-?\d+)", err)]


def packet_times(path: Path, stream: str) -> tuple[list[Fraction], list[Fraction]]:
    """(pts, duration) in seconds of every packet of ``stream`` ('v' or 'a'), as stored."""
    out = ffmpeg("-copyts", "-i", path, "-map", f"0:{stream}:0", "-c", "copy", "-f", "framecrc", "-").stdout
    base = re.search(r"^#tb 0: (\d+)/(\d+)", out, re.MULTILINE)
    tick = Fraction(int(base[1]), int(base[2]))
    rows = [line.split(",") for line in out.splitlines() if line and not line.startswith("#")]
    return [int(r[2]) * tick for r in rows], [int(r[3]) * tick for r in rows]


def audio_end(path: Path) -> Fraction:
    pts, durations = packet_times(path, "a")
    return max(p + d for p, d in zip(pts, durations))


def flash_times(path: Path) -> list[float]:
    """Times of the white frames (mean luma > 200)."""
    err = ffmpeg("-i", path, "-map", "0:v:0", "-vf", "showinfo", "-f", "null", "-").stderr
    return [float(t) for t, luma in re.findall(r"pts_time:(\S+).*?mean:\[(\d+)", err) if int(luma) > 200]


def click_times(path: Path) -> list[float]:
    """Where sound starts after silence (the clicks), from ffmpeg's silencedetect."""
    err = ffmpeg("-i", path, "-map", "0:a:0", "-af", "silencedetect=n=-30dB:d=0.01", "-f", "null", "-").stderr
    return [float(t) for t in re.findall(r"silence_end: (\S+)", err)]


CLICKS = "aevalsrc='0.8*sin(2*PI*1000*t)*(between(t,1.0,1.03)+between(t,3.2,3.23))':s=44100:d=4.5"


def identity(frame: np.ndarray) -> np.ndarray:
    return frame


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory) -> Path:
    return make_vfr_clip(tmp_path_factory.mktemp("vfr") / "phone.mp4")


@pytest.fixture(scope="module")
def flash_clip(tmp_path_factory) -> Path:
    """Black, with one white frame at 1.0 s (24 fps part) and one at 3.2 s (15 fps part), and a
    30 ms 1 kHz click at exactly those times."""
    return make_vfr_clip(
        tmp_path_factory.mktemp("flash") / "flash.mp4", source="color=c=black",
        extra=",drawbox=c=white:t=fill:enable='between(t,0.99,1.01)+between(t,3.19,3.21)'",
        audio=CLICKS)


# ------------------------------------------------------------------------------------ variable rate


def test_probe_counts_frames_of_a_variable_rate_clip(vfr_clip):
    info = probe_video(vfr_clip)
    assert info.variable_rate
    assert info.frame_count == VFR_FRAMES == len(frame_times(vfr_clip))
    assert 22 < float(info.fps) < 24  # the average, not the 120 fps tick ffmpeg calls nominal


def test_variable_rate_keeps_every_timestamp_and_the_audio_sync(vfr_clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    stats = transcode(vfr_clip, out, identity, progress=True, refresh_every=10)
    assert f"{VFR_FRAMES}/{VFR_FRAMES}" in capsys.readouterr().err  # the bar's total is the true count
    before, after = frame_times(vfr_clip), frame_times(out)
    assert stats.frames_out == len(after) == len(before) == VFR_FRAMES
    tick = probe_video(vfr_clip).time_base
    assert max(abs(a - b) for a, b in zip(before, after)) <= tick
    assert probe_video(out).variable_rate
    # the last frame and the end of the audio are as far apart as in the source (within one frame)
    last_frame = Fraction(1, 15)
    sync_in, sync_out = audio_end(vfr_clip) - before[-1], audio_end(out) - after[-1]
    print(f"audio end - last frame: source {float(sync_in) * 1000:.1f} ms, output {float(sync_out) * 1000:.1f} ms")
    assert abs(sync_out - sync_in) < last_frame
    assert 0 < sync_out <= last_frame + Fraction(1, 100)


def test_flash_and_click_stay_together(flash_clip, tmp_path):
    """A white frame and a click at the same moment are still together after the round trip."""
    flashes, clicks = flash_times(flash_clip), click_times(flash_clip)[:2]
    assert flashes == pytest.approx([1.0, 3.2], abs=1e-3) and clicks == pytest.approx([1.0, 3.2], abs=5e-3)
    out = tmp_path / "out.mp4"
    transcode(flash_clip, out, lambda frame: np.ascontiguousarray(frame[:, ::-1]), progress=False)  # a real change
    out_flashes, out_clicks = flash_times(out), click_times(out)[:2]
    errors_ms = [1000 * (f - c) for f, c in zip(out_flashes, out_clicks)]
    print(f"flash - click after the round trip: {errors_ms} ms")
    assert len(out_flashes) == 2
    assert abs(errors_ms[0]) < 1000 / 24 and abs(errors_ms[1]) < 1000 / 15  # within one frame
    assert out_flashes == pytest.approx(flashes, abs=1e-6)


@pytest.mark.slow
def test_flash_and_click_stay_together_through_a_real_swap(tmp_path):
    """The same check through ``mfs-fast swap`` (torch backend, starter weights) on 5 frames of a
    face, 1/24, 1/30, 1/15 and 1/24 s apart: the swapped frames keep their times, and the flashes
    at 1/24 s and 17/120 s stay on their clicks. (Seconds: it loads the networks.)"""
    import cv2
    import skimage.data

    from mfs_fast.cli import main

    face = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[0:300, 90:390], (160, 160),
                      interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "source.png"), face)
    flashes_at = (Fraction(1, 24), Fraction(17, 120))
    ffmpeg("-f", "lavfi", "-i", "aevalsrc='0.8*sin(2*PI*1000*t)*(between(t,1/24,1/24+0.03)+between(t,17/120,17/120+0.03))'"
           ":s=44100:d=0.5", tmp_path / "clicks.wav")
    times = [Fraction(0), Fraction(1, 24), Fraction(3, 40), Fraction(17, 120), Fraction(11, 60)]
    white = np.full_like(face, 255)
    with VideoWriter(tmp_path / "clip.mp4", 160, 160, 24, audio_from=tmp_path / "clicks.wav",
                     time_base=Fraction(1, 120)) as writer:
        for t in times:
            writer.write(white if t in flashes_at else np.roll(face, int(t * 24) % 5, axis=1), t)
    expected = [float(t) for t in flashes_at]
    assert flash_times(tmp_path / "clip.mp4") == pytest.approx(expected, abs=1e-6)
    out = tmp_path / "swapped.mp4"
    assert main(["swap", "--source", str(tmp_path / "source.png"), "--target", str(tmp_path / "clip.mp4"),
                 "-o", str(out), "--backend", "torch", "--quiet"]) == 0
    assert frame_times(out) == frame_times(tmp_path / "clip.mp4") == times
    assert flash_times(out) == pytest.approx(expected, abs=1e-6)
    assert click_times(out)[:2] == pytest.approx(expected, abs=5e-3)


def test_timed_frames_give_the_times_of_the_file(vfr_clip):
    times = [pts for pts, _ in read_timed_frames(vfr_clip)]
    assert times == frame_times(vfr_clip)


# ------------------------------------------------------------------------------------ constant rate


@pytest.fixture(scope="module")
def ntsc_clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ntsc")
    mp4 = folder / "ntsc.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x120:r=30000/1001", "-f", "lavfi", "-i", "sine=d=2",
           "-frames:v", 60, "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-shortest", mp4)
    mkv = folder / "ntsc.mkv"  # Matroska keeps milliseconds: 0, 33, 67, 100, ...
    ffmpeg("-i", mp4, "-c", "copy", mkv)
    late = folder / "late.mkv"  # video starts 0.25 s after the audio
    ffmpeg("-itsoffset", 0.25, "-i", mkv, "-i", mkv, "-map", "0:v", "-map", "1:a", "-c", "copy", late)
    return {"mp4": mp4, "mkv": mkv, "late": late}


@pytest.mark.parametrize("name, first", [("mp4", 0), ("mkv", 0), ("late", Fraction(1, 4))])
def test_constant_rate_stays_exact(ntsc_clips, tmp_path, name, first):
    """30000/1001 fps in, exactly 1001/30000 s per frame out, even from a millisecond-based file,
    and a video that starts after its audio still starts that much later."""
    src = ntsc_clips[name]
    info = probe_video(src)
    assert info.fps == Fraction(30000, 1001) and not info.variable_rate
    out = tmp_path / "out.mp4"
    transcode(src, out, identity, progress=False)
    result = probe_video(out)
    assert result.fps == Fraction(30000, 1001) and not result.variable_rate
    pts, _ = packet_times(out, "v")
    pts.sort()
    assert pts[0] == first
    assert {b - a for a, b in zip(pts, pts[1:])} == {Fraction(1001, 30000)}
    source = frame_times(src)
    assert len(pts) == len(source)
    assert max(abs(a - b) for a, b in zip(source, pts)) <= Fraction(1, 2000)  # half a millisecond tick
    assert min(packet_times(out, "a")[0]) <= 0


def test_a_dropped_frame_is_a_gap_not_a_variable_rate(tmp_path):
    src = tmp_path / "dropped.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x120:r=25", "-frames:v", 30, "-vf", "select='not(eq(n,10))'",
           "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", "veryfast", src)
    info = probe_video(src)
    assert (info.fps, info.frame_count, info.variable_rate) == (25, 30, False)
    transcode(src, tmp_path / "out.mp4", identity, progress=False)
    assert frame_times(tmp_path / "out.mp4") == [Fraction(n, 25) for n in range(31) if n != 10]


def test_writer_default_times_are_exact_frames(tmp_path):
    frame = np.zeros((48, 64, 3), np.uint8)
    with VideoWriter(tmp_path / "cfr.mp4", 64, 48, Fraction(24000, 1001)) as writer:
        for _ in range(5):
            writer.write(frame)
    pts, _ = packet_times(tmp_path / "cfr.mp4", "v")
    assert sorted(pts) == [n * Fraction(1001, 24000) for n in range(5)]


def test_writer_moves_a_repeated_time_with_a_warning(tmp_path):
    frame = np.zeros((48, 64, 3), np.uint8)
    with pytest.warns(UserWarning, match="1 frame.*moved one tick"):
        with VideoWriter(tmp_path / "t.mp4", 64, 48, 25, time_base=Fraction(1, 1000)) as writer:
            for pts in (0, Fraction(1, 10), Fraction(1, 10), Fraction(3, 10)):
                writer.write(frame, pts)
    assert sorted(packet_times(tmp_path / "t.mp4", "v")[0]) == [0, Fraction(1, 10), Fraction(101, 1000),
                                                                Fraction(3, 10)]
