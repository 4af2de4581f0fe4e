"""Video in and out through the ffmpeg binary of imageio-ffmpeg: frames in, frames out, audio kept.

Decisions (see also each function):

* **Kind by content.** :func:`media_kind` looks at magic bytes first (PNG, JPEG, BMP, TIFF, WebP,
  GIF), then asks ffmpeg. A GIF with two or more frames is a ``"video"`` (read with
  :func:`read_frames`); a single-frame GIF is an ``"image"`` when OpenCV can read GIFs, else a
  one-frame ``"video"``. APNG and animated WebP count as images (their first frame).
* **Rotation.** ffmpeg's autorotate is left on: frames come out upright, ``VideoInfo.width`` and
  ``height`` are the displayed (rotated) size and ``VideoInfo.rotation`` records what the file
  said. Written videos hold upright pixels and no rotation tag. Sample aspect ratio is ignored.
* **Timing.** Every frame keeps its presentation time. :func:`read_timed_frames` returns each
  decoded frame (``-fps_mode passthrough``, one per decoded frame) with its exact timestamp, read
  from the same ffmpeg process (``-stats_enc_pre``: one line per frame, flushed as it goes), on a
  timeline that starts at the file's start time (ffmpeg's usual zero point, shared with the audio).
  :class:`VideoWriter` takes those timestamps and pipes the frames to the encoder as a small
  Matroska stream (:mod:`mfs_fast.media.mkv_stream`), because raw video on a pipe has no timestamps
  and would be re-timed at a constant rate, putting variable-rate (phone) clips out of sync with
  their audio. The encoder's time base is a multiple of the source's, so timestamps come out
  exact: variable rate in, the same variable rate out; constant rate in, the same exact rational
  rate out (``30000/1001`` stays 1001 ticks of 1/30000 s).
* **Frame rate.** ``VideoInfo.fps`` is the stream's nominal rate as an exact fraction (what
  ffmpeg's filter graph receives, e.g. ``30000/1001``); for a variable-rate stream
  (``VideoInfo.variable_rate``) it is the average rate instead, since the nominal one is only the
  finest tick (e.g. 120 for a mix of 24, 30 and 15 fps). ``VideoInfo.frame_count`` is exact: the
  video packets counted by the probe.
* **Encoding.** H.264 (libx264), CRF 17 (visually lossless), BT.709 matrix and tags, mp4
  ``+faststart``. Even sizes use yuv420p (plays everywhere). Odd widths/heights cannot be stored in
  4:2:0 (chroma is subsampled by 2 and H.264 crops in steps of 2), so they use yuv444p (High 4:4:4
  profile): the output keeps the exact size, at the cost of players without 4:4:4 support
  (some hardware decoders, Safari).
* **Audio.** On close, every audio stream of ``audio_from`` is copied packet for packet
  (``-c:a copy``), all of it, even if longer than the video. If the container cannot hold the
  codec (e.g. ``pcm_alaw`` in mp4), the audio is re-encoded to AAC with a :class:`UserWarning`,
  or, with ``audio_fallback=False``, a :class:`VideoError` names the codec and a container that
  holds it (.mkv).
* **Safety.** Output goes to hidden temporary files next to ``dst``
  (:class:`~mfs_fast.atomic.PendingFile`: created 0666 minus the umask, like any new file); only a
  fully successful close renames onto ``dst``. Any error, KeyboardInterrupt or SystemExit stops
  ffmpeg and removes the temporaries, leaving an existing ``dst`` as it was; SIGTERM does the same
  inside :func:`mfs_fast.signals.terminate_raises_interrupt` (the CLI uses it). ffmpeg runs in
  its own process group, so a terminal's Ctrl-C reaches only Python, which stops ffmpeg itself
  rather than let it finish a partial file. Inputs are only ever read, and ``dst`` may not be one
  of them.
* **Damaged input.** ffmpeg conceals broken data and goes on; :func:`read_frames` then warns
  (:class:`UserWarning` with ffmpeg's messages) instead of silently returning fewer frames.
"""

from __future__ import annotations

import collections
import functools
import math
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
import warnings
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Literal

import cv2
import numpy as np

from . import mkv_stream
from ..atomic import PendingFile
from ..errors import ImageError, MediaError, VideoError
from .image_formats import image_format as _image_format, looks_like_text, not_an_image
from .image import check_image_file

PathLike = str | os.PathLike

DEFAULT_CRF = 17
DEFAULT_PRESET = "veryfast"
_PROBE_TIMEOUT_S = 120
# BGR -> limited-range BT.709 YCbCr, tagged as such (matrix, primaries, transfer) so players agree.
# accurate_rnd removes swscale's ~2-level darkening bias, area averages the chroma it subsamples:
# the round trip error on real clips drops from 2.3 to 1.1 levels (mean abs), at no measurable cost.
_TO_BT709 = ("scale=out_color_matrix=bt709:out_range=tv:flags=area+accurate_rnd,"
             "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv")
_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}

# ---------------------------------------------------------------------------------------------- ffmpeg


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped by imageio-ffmpeg (no system ffmpeg is assumed)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # ImportError, or RuntimeError when the binary is missing
        raise VideoError(f"no ffmpeg binary: install imageio-ffmpeg ({exc})") from exc


@functools.lru_cache(maxsize=1)
def _require_libx264() -> None:
    """Fail early, once, when the ffmpeg binary cannot encode H.264 with libx264."""
    proc = _run([ffmpeg_exe(), "-hide_banner", "-encoders"])
    if not re.search(r"^\s*V\S*\s+libx264\s", proc.stdout, re.MULTILINE):
        raise VideoError(f"the ffmpeg binary {ffmpeg_exe()} has no libx264 encoder; cannot write H.264")


def _popen(args: list[str], **options) -> subprocess.Popen:
    """Start ffmpeg in a session (so a process group) of its own: a terminal's Ctrl-C then
    reaches only Python, which stops ffmpeg itself and removes what it wrote (see Safety above);
    an ffmpeg that got the signal too would finish and close a partial file on its own."""
    return subprocess.Popen(args, start_new_session=True, **options)


def _run(args: list[str], timeout: float = _PROBE_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run an ffmpeg command to the end and capture its text output; an interrupt kills it."""
    try:
        return subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=timeout,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        raise VideoError(f"ffmpeg took over {timeout:.0f} s: {' '.join(args[:6])} ...") from exc


def _tail(text: str, lines: int = 4) -> str:
    """The last non-empty lines of ffmpeg's stderr, for error messages."""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(ffmpeg printed nothing)"


def _grow_pipe(pipe: IO[bytes], frame_bytes: int) -> None:
    """Let a pipe hold a whole frame (up to 1 MiB, the unprivileged Linux limit) so neither side waits
    for the other chunk by chunk; a no-op where the system does not allow it."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, min(max(frame_bytes, 1 << 16), 1 << 20))
    except (ImportError, AttributeError, OSError):
        pass


def _read_log(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------- files


def _existing_file(path: PathLike, error: type[MediaError] = MediaError) -> Path:
    """``path`` as a Path, after checking it is a non-empty regular file."""
    path = Path(path)
    if not path.exists():
        raise error(f"file not found: {path}")
    if not path.is_file():
        raise error(f"not a regular file: {path}")
    if path.stat().st_size == 0:
        raise error(f"file is empty: {path}")
    return path


_VIDEO_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # ISO BMFF: mp4, mov, m4v, 3gp
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"wide"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"FLV"),
    (0, b"OggS"),
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
)


def _looks_like_video(head: bytes) -> bool:
    """True when the first bytes are those of a common video container (then errors say 'video')."""
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return True
    return any(head[at:at + len(magic)] == magic for at, magic in _VIDEO_SIGNATURES)


def _skip_sub_blocks(data: bytes, at: int) -> int:
    """Index just after a chain of GIF data sub-blocks starting at ``at``."""
    while True:
        size = data[at]
        at += 1 + size
        if size == 0:
            return at


def _gif_frame_count(path: Path, stop_at: int = 2) -> int:
    """Frames (image descriptors) in a GIF, counting no further than ``stop_at``."""
    data = path.read_bytes()
    try:
        at = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
        frames = 0
        while frames < stop_at:
            block = data[at]
            if block == 0x3B:  # trailer
                break
            if block == 0x21:  # extension: label, then sub-blocks
                at = _skip_sub_blocks(data, at + 2)
            elif block == 0x2C:  # image descriptor, optional local colour table, LZW size, sub-blocks
                flags = data[at + 9]
                at += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
                at = _skip_sub_blocks(data, at + 1)
                frames += 1
            else:
                raise ImageError(f"corrupt GIF {path}: unexpected block 0x{block:02x} at byte {at}")
    except IndexError:
        raise ImageError(f"truncated GIF: {path}") from None
    if frames == 0:
        raise ImageError(f"GIF without any frame: {path}")
    return frames


# ---------------------------------------------------------------------------------------------- kind


def media_kind(path: PathLike) -> Literal["image", "video"]:
    """Whether ``path`` holds an image or a video, judged by its bytes, never by its name.

    Images are recognised by magic bytes and checked to be complete and of a sane size
    (:func:`~mfs_fast.media.image.check_image_file`); anything else but text is asked of ffmpeg.
    Raises :class:`MediaError` (missing, empty, unrecognised), :class:`ImageError` (image header but
    damaged, or an image format this project does not read) or :class:`VideoError` (a video
    container ffmpeg cannot open, e.g. truncated).
    """
    path = _existing_file(path)
    with path.open("rb") as f:
        head = f.read(32)
    fmt = _image_format(head)
    if fmt == "gif":
        if _gif_frame_count(path) > 1 or not cv2.haveImageReader(str(path)):
            return "video"
    if fmt is not None:
        check_image_file(path)
        return "image"
    if looks_like_text(head):
        raise not_an_image(path, head, video_too=True)
    return _kind_from_ffmpeg(path, head)


_IMAGE_DEMUXERS = re.compile(r"^(image2|.*_pipe|gif|apng|webp)$")


def _kind_from_ffmpeg(path: Path, head: bytes) -> Literal["image", "video"]:
    """Ask ffmpeg's demuxers: a video stream in a non-image container is a video."""
    header = _parse_header(_run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]).stderr)
    if header.container is None:
        error = VideoError if _looks_like_video(head) else MediaError
        what = "a corrupt or truncated video" if error is VideoError else "neither an image nor a video ffmpeg reads"
        raise error(f"{path} is {what}: {header.error}")
    if not header.has_video:
        raise MediaError(f"{path} has no video stream (container {header.container}; audio only?)")
    if _IMAGE_DEMUXERS.match(header.container):  # no image magic of ours: ffmpeg guesses from the name
        raise not_an_image(path, head, video_too=True)
    return "video"


# --------------------------------------------------------------------------------------------- probe


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself; sizes are as displayed (after rotation)."""

    width: int
    height: int
    fps: Fraction  # nominal rate; the average rate when variable_rate
    frame_count: int | None  # video packets in the file (= frames decoded, barring damage)
    duration: float | None  # seconds, of the whole file (audio included)
    has_audio: bool
    audio_codec: str | None  # codec of the first audio stream
    audio_codecs: tuple[str, ...] = ()
    rotation: int = 0  # degrees stated by the display matrix (frames are returned upright)
    avg_fps: float | None = None  # average rate as ffmpeg prints it (differs from fps when variable)
    video_codec: str | None = None
    time_base: Fraction | None = None  # the stream's tick: every frame timestamp is a whole number of them
    start: Fraction = Fraction(0)  # the file's start time (seconds, to the microsecond): timelines count from it
    variable_rate: bool = False  # frame steps are not whole multiples of one duration (dropped frames are not VFR)


@dataclass
class _Header:
    """The input section of ``ffmpeg -i`` output, parsed."""

    container: str | None = None
    duration: float | None = None
    start: Fraction = Fraction(0)
    video_codec: str | None = None
    avg_fps: float | None = None
    rotation: int = 0
    audio_codecs: tuple[str, ...] = ()
    error: str = ""

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None


_STREAM = re.compile(r"^\s*Stream #0:\d+\S*: (Video|Audio): ([\w-]+)(.*)$", re.MULTILINE)


def _parse_header(stderr: str) -> _Header:
    """Container, duration and streams of input #0 from ffmpeg's stderr."""
    found = re.search(r"^Input #0, (.+?), from '", stderr, re.MULTILINE)
    if found is None:
        return _Header(error=_tail(stderr, 2))
    section = re.split(r"^(?:Output #0|Stream mapping:)", stderr[found.start():], maxsplit=1, flags=re.MULTILINE)[0]
    header = _Header(container=found.group(1))
    duration = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", section)
    if duration:
        h, m, s = duration.groups()
        header.duration = int(h) * 3600 + int(m) * 60 + float(s)
    start = re.search(r", start: (-?\d+(?:\.\d+)?)", section)
    if start:
        header.start = Fraction(start.group(1))
    audio = []
    for kind, codec, rest in _STREAM.findall(section):
        if kind == "Audio":
            audio.append(codec)
        elif header.video_codec is None and "(attached pic)" not in rest:
            header.video_codec = codec
            header.avg_fps = _avg_fps(rest)
    header.audio_codecs = tuple(audio)
    rotation = re.search(r"rotation of (-?\d+(?:\.\d+)?) degrees", section)
    if rotation:
        header.rotation = round(float(rotation.group(1))) % 360
    return header


def _avg_fps(stream_line: str) -> float | None:
    found = re.search(r", (\d+(?:\.\d+)?)(k?) fps", stream_line)
    if not found:
        return None
    return float(found.group(1)) * (1000 if found.group(2) else 1)


def probe_audio(path: PathLike) -> tuple[str, ...]:
    """Codecs of the audio streams of any media file (audio-only files included)."""
    return _media_header(path).audio_codecs


def _media_header(path: PathLike) -> _Header:
    """``ffmpeg -i``'s view of any media file (container, start, streams); MediaError if unreadable."""
    path = _existing_file(path, MediaError)
    header = _parse_header(_run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]).stderr)
    if header.container is None:
        raise MediaError(f"cannot read audio from {path}: {header.error}")
    return header


def probe_video(path: PathLike) -> VideoInfo:
    """Size, exact frame rate, frame count, duration and audio of a video, from one ffmpeg run.

    ffmpeg decodes the first frame through ``showinfo``, which states the exact rate, time base
    and the size after autorotation, i.e. exactly the frames :func:`read_frames` returns; a second
    output copies every video packet to ``framecrc`` (no decoding), which gives the true frame
    count and whether the rate is constant.
    """
    path = _existing_file(path, VideoError)
    proc = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:V:0", "-frames:v", "1",
                 "-vf", "showinfo", "-f", "null", "-", "-map", "0:V:0", "-c", "copy", "-f", "framecrc", "pipe:1"])
    header = _parse_header(proc.stderr)
    if header.container is None:
        raise VideoError(f"cannot open {path} as a video: {header.error}")
    if not header.has_video:
        raise VideoError(f"{path} has no video stream (container {header.container})")
    rate = re.search(r"config in time_base: (\d+)/(\d+), frame_rate: (\d+)/(\d+)", proc.stderr)
    size = re.search(r" s:(\d+)x(\d+) ", proc.stderr)
    if proc.returncode != 0 or size is None:
        raise VideoError(f"cannot decode a frame of {path}: {_tail(proc.stderr)}")
    fps = _frame_rate(rate, header.avg_fps, path)
    time_base = Fraction(int(rate.group(1)), int(rate.group(2))) if rate and int(rate.group(2)) else None
    cadence = _packet_cadence(proc.stdout, fps)
    duration = header.duration
    if cadence is not None and cadence.variable:
        fps = cadence.average_fps
    return VideoInfo(
        width=int(size.group(1)), height=int(size.group(2)), fps=fps,
        frame_count=cadence.count if cadence is not None else
        (None if duration is None else max(1, round(duration * fps))),
        duration=duration, has_audio=bool(header.audio_codecs),
        audio_codec=header.audio_codecs[0] if header.audio_codecs else None,
        audio_codecs=header.audio_codecs, rotation=header.rotation, avg_fps=header.avg_fps,
        video_codec=header.video_codec, time_base=time_base, start=header.start,
        variable_rate=cadence is not None and cadence.variable)


@dataclass(frozen=True)
class _Cadence:
    count: int
    variable: bool
    average_fps: Fraction


_NOPTS = -(1 << 63)
_DISCARD = 0x4  # AV_PKT_FLAG_DISCARD: dropped after decoding (e.g. outside an mp4 edit list)


def _packet_cadence(framecrc: str, nominal: Fraction) -> _Cadence | None:
    """Frame count and constancy of the rate, from ``framecrc`` lines ``stream, dts, pts,
    duration, size, crc[, F=flags]`` (time base in the ``#tb`` line); None when unusable.

    Constancy is judged against the most common step, not against ``nominal``: ffmpeg's nominal
    rate of a variable stream is the finest common tick (120 for 24, 30 and 15 fps parts), of
    which every step is a whole multiple."""
    tb = re.search(r"^#tb 0: (\d+)/(\d+)", framecrc, re.MULTILINE)
    if tb is None or int(tb.group(2)) == 0:
        return None
    tick = Fraction(int(tb.group(1)), int(tb.group(2)))
    count, stamps = 0, []
    for line in framecrc.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if line.startswith("#") or len(fields) < 6:
            continue
        flags = int(fields[6][2:], 16) if len(fields) > 6 and fields[6].startswith("F=") else 0
        if flags & _DISCARD:
            continue
        count += 1
        if int(fields[2]) != _NOPTS:
            stamps.append(int(fields[2]))
            last_duration = int(fields[3])
    if count == 0:
        return None
    stamps.sort()
    steps = collections.Counter(b - a for a, b in zip(stamps, stamps[1:]))
    common = steps.most_common(1)[0][0] if steps else 0
    # variable: some step is not a whole number of the usual step (a dropped frame's gap is)
    variable = common > 0 and any(round(step / common) == 0 or abs(step - round(step / common) * common) > 1
                                  for step in steps)
    span = (stamps[-1] - stamps[0] + max(last_duration, 1)) * tick if stamps else Fraction(0)
    average = (Fraction(len(stamps)) / span).limit_denominator(1001) if span > 0 else nominal
    return _Cadence(count, variable, average)


def _frame_rate(rate: re.Match | None, avg_fps: float | None, path: Path) -> Fraction:
    """The exact nominal rate; the printed average (to 1/1001 steps) only when that is all there is."""
    if rate and int(rate.group(3)) > 0 and int(rate.group(4)) > 0:
        return Fraction(int(rate.group(3)), int(rate.group(4)))
    if avg_fps:
        return Fraction(avg_fps).limit_denominator(1001)
    raise VideoError(f"{path} states no frame rate")


# ---------------------------------------------------------------------------------------------- read


def read_frames(path: PathLike, *, prefetch: int = 4) -> Iterator[np.ndarray]:
    """Every frame of the first video stream as a fresh H x W x 3 BGR uint8 array, upright.

    The file is probed now (errors are raised here, not at the first frame); decoding runs in an
    ffmpeg process, and with ``prefetch`` > 0 a reader thread keeps up to that many frames ready
    while the caller works. Close the iterator (or exhaust it) to stop ffmpeg.
    """
    path = _existing_file(path, VideoError)
    return _frames_only(_decode(path, probe_video(path), prefetch))


def _frames_only(timed: Iterator[tuple[Fraction, np.ndarray]]) -> Iterator[np.ndarray]:
    with closing(timed):  # closing this generator stops ffmpeg at once
        for _, frame in timed:
            yield frame


def read_timed_frames(path: PathLike, *, prefetch: int = 4) -> Iterator[tuple[Fraction, np.ndarray]]:
    """Like :func:`read_frames`, with each frame's presentation time: ``(seconds, frame)``.

    Times are exact fractions of the stream's time base, counted from the file's start time (the
    zero point the audio shares), so they can go straight to :meth:`VideoWriter.write`.
    """
    path = _existing_file(path, VideoError)
    return _decode(path, probe_video(path), prefetch)


def _decode(path: Path, info: VideoInfo, prefetch: int) -> Iterator[tuple[Fraction, np.ndarray]]:
    """``(time, frame)`` pairs of ``path`` at ``info``'s size; ffmpeg is stopped however the iteration ends.

    Each frame's timestamp comes from the same ffmpeg process: ``-stats_enc_pre`` writes the
    decoded frame's pts and time base on a second pipe, one flushed line per frame, just before
    the frame itself goes to stdout, so line n is always there once frame n has been read.
    ``-copyts``: the file's own timestamps, from which we subtract its start time ourselves (ffmpeg
    would subtract the start of only the streams it uses, losing the offset to the audio).
    """
    log = tempfile.TemporaryFile()
    stats_read, stats_write = os.pipe()
    try:
        proc = _popen(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-copyts", "-i", str(path), "-map", "0:V:0",
             "-fps_mode", "passthrough", "-enc_time_base", "demux", "-s", f"{info.width}x{info.height}",
             "-pix_fmt", "bgr24", "-stats_enc_pre", f"pipe:{stats_write}", "-stats_enc_pre_fmt", "{ptsi} {tbi}",
             "-f", "rawvideo", "pipe:1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, bufsize=0, pass_fds=(stats_write,))
    except BaseException:
        os.close(stats_read)
        log.close()
        raise
    finally:
        os.close(stats_write)
    stats = os.fdopen(stats_read, "rb")
    _grow_pipe(proc.stdout, info.width * info.height * 3)
    reader = None
    try:
        frames = _timed(_raw_frames(proc.stdout, info.height, info.width, path), stats, info)
        if prefetch > 0:
            frames = reader = _BackgroundReader(frames, prefetch)
        yield from frames
        if proc.wait() != 0:
            raise VideoError(f"ffmpeg failed while decoding {path}: {_tail(_read_log(log))}")
        _warn_on_decode_errors(path, _read_log(log))
    finally:
        if reader is not None:
            reader.stop()
        _stop_process(proc)  # the reader thread then sees the end of the pipe
        if reader is not None:
            reader.join()
        proc.stdout.close()
        stats.close()
        log.close()


_NO_PTS = (1 << 63) - 1  # how -stats_enc_pre prints a missing timestamp


def _timed(frames: Iterator[np.ndarray], stats: IO[bytes], info: VideoInfo) -> Iterator[tuple[Fraction, np.ndarray]]:
    """Pair each frame with its stats line ``ptsi tbi``; a frame without a timestamp (damaged
    input) is placed one nominal frame after the previous one."""
    previous: Fraction | None = None
    for frame in frames:
        fields = stats.readline().split()
        pts: Fraction | None = None
        try:
            ticks, tb = int(fields[0]), Fraction(fields[1].decode())
            if ticks != _NO_PTS and tb > 0:
                pts = ticks * tb - info.start
        except (IndexError, ValueError, ZeroDivisionError):
            pass
        if pts is None:
            pts = Fraction(0) if previous is None else previous + 1 / info.fps
        previous = pts
        yield pts, frame


def _warn_on_decode_errors(path: Path, log: str) -> None:
    """ffmpeg conceals damaged data and goes on; say so rather than lose frames silently."""
    if log.strip():
        warnings.warn(f"ffmpeg reported errors while decoding {path} (frames may be missing or damaged): "
                      f"{_tail(log)}", stacklevel=4)


def _raw_frames(pipe: IO[bytes], height: int, width: int, path: Path) -> Iterator[np.ndarray]:
    """Exact-size frames read straight into new arrays (no intermediate bytes objects)."""
    size = height * width * 3
    while True:
        frame = np.empty((height, width, 3), np.uint8)
        view = memoryview(frame).cast("B")
        got = 0
        while got < size:
            n = pipe.readinto(view[got:])
            if not n:
                break
            got += n
        if got == 0:
            return
        if got < size:
            raise VideoError(f"{path}: the last frame from ffmpeg is incomplete ({got} of {size} bytes)")
        yield frame


class _BackgroundReader:
    """Iterates ``items`` in a daemon thread, up to ``depth`` ahead; its exceptions surface in the consumer."""

    _END = object()

    def __init__(self, items: Iterator[np.ndarray], depth: int):
        self._items = items
        self._ready: queue.Queue = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="mfs-video-reader", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stopped.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer
            self._put(exc)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            item = self._ready.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self._stopped.set()

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)


def _stop_process(proc: subprocess.Popen) -> None:
    """Kill ``proc`` if it still runs, and reap it (its stdout stays open for a reader to drain)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()


# --------------------------------------------------------------------------------------------- write


class VideoWriter:
    """Encode BGR frames to H.264, each at its own time, and on a successful close add
    ``audio_from``'s audio unchanged.

    ``dst`` appears complete or not at all: frames go to a hidden temporary in ``dst``'s folder,
    which any error or interrupt (in the ``with`` body, a wrong-size frame, ffmpeg failing)
    removes. ``quality`` is the x264 CRF (0 lossless .. 51; 17 is visually lossless). ``inputs``
    are further paths ``dst`` must not be (``audio_from`` always is one).

    Timing: :meth:`write` takes each frame's time in seconds (default: frame n at n / ``fps``),
    rounded to ``time_base``, the output's tick (default ``1/fps.numerator``, which holds every
    n / ``fps`` exactly; at least 1 ns). Audio is placed as in ``audio_from``: its file's start
    time is zero, the same zero :func:`read_timed_frames` counts from.
    """

    def __init__(self, dst: PathLike, width: int, height: int, fps: Fraction | int | float | str,
                 audio_from: PathLike | None = None, quality: int = DEFAULT_CRF, *,
                 preset: str = DEFAULT_PRESET, audio_fallback: bool = True, inputs: Iterable[PathLike] = (),
                 time_base: Fraction | None = None):
        self.dst = Path(dst)
        self.width, self.height = _positive_size(width, height)
        self.fps = _positive_fps(fps)
        self.time_base = _output_tick(time_base, self.fps)
        # 4:2:0 halves the chroma in both directions, so an odd size needs 4:4:4 to stay exact
        self.pixel_format = "yuv420p" if self.width % 2 == 0 and self.height % 2 == 0 else "yuv444p"
        self.frames_written = 0
        self.audio_fallback = audio_fallback
        self._format = _container_for(self.dst)
        _refuse_inputs(self.dst, [*inputs, *([audio_from] if audio_from is not None else [])])
        self.audio_from, self._audio_start = self._audio_source(audio_from)
        if not 0 <= int(quality) <= 51:
            raise VideoError(f"quality is an x264 CRF between 0 and 51, not {quality}")
        _require_libx264()
        self._last_tick = -1
        self._moved = 0  # frames whose time was not after the previous frame's
        self._proc: subprocess.Popen | None = None
        self._muxed: PendingFile | None = None
        self._log = tempfile.TemporaryFile()
        self._video: PendingFile | None = None
        try:
            self._video = PendingFile(self.dst, "part", VideoError)
            self._proc = _popen(self._encoder_args(int(quality), preset), stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=self._log, bufsize=0)
            _grow_pipe(self._proc.stdin, self.width * self.height * 3)
            frame_ns = round(1_000_000_000 / self.fps)
            self._send(lambda pipe: pipe.write(mkv_stream.stream_header(self.width, self.height, frame_ns)))
        except BaseException:
            self.abort()
            raise

    # -- setup helpers

    def _audio_source(self, audio_from: PathLike | None) -> tuple[Path | None, Fraction]:
        """``audio_from`` and its start time when it has audio; (None, 0) when not (nothing to mux)."""
        if audio_from is None:
            return None, Fraction(0)
        header = _media_header(audio_from)
        return (Path(audio_from), header.start) if header.audio_codecs else (None, Fraction(0))

    def _encoder_args(self, crf: int, preset: str) -> list[str]:
        """Matroska on stdin (frames with their times) to H.264 with those times: ``passthrough``
        keeps every frame as it comes, ``-copyts`` keeps a late first frame late, and the encoder
        time base is the output tick, so ffmpeg rounds the nanosecond times back to exact ticks."""
        tick = self.time_base
        return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-copyts",
                "-f", "matroska", "-i", "pipe:0", "-map", "0:v", "-vf", _TO_BT709, "-fps_mode", "passthrough",
                "-enc_time_base", f"{tick.numerator}:{tick.denominator}",
                "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", self.pixel_format,
                *self._faststart(), "-f", self._format, str(self._video.path)]

    def _faststart(self) -> list[str]:
        return ["-movflags", "+faststart"] if self._format in ("mp4", "mov") else []

    # -- frames

    def write(self, frame: np.ndarray, pts: Fraction | float | None = None) -> None:
        """Append one H x W x 3 uint8 BGR frame shown at ``pts`` seconds (default n / fps); a
        wrong frame aborts the whole file and raises. A time not after the previous frame's
        (damaged input) is moved one tick after it, with a warning at :meth:`close`."""
        if self._proc is None:
            raise VideoError(f"VideoWriter for {self.dst} is closed")
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != (self.height, self.width, 3):
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            self.abort()
            raise VideoError(f"frame {self.frames_written} for {self.dst} is {got}; expected uint8 "
                             f"{(self.height, self.width, 3)}; nothing was written")
        tick = round(Fraction(self.frames_written / self.fps if pts is None else pts) / self.time_base)
        if tick <= self._last_tick:
            tick = self._last_tick + 1
            self._moved += 1
        self._last_tick = tick
        pixels = memoryview(np.ascontiguousarray(frame)).cast("B")
        self._send(lambda pipe: mkv_stream.write_frame(pipe, pixels, round(tick * self.time_base * 1_000_000_000)))
        self.frames_written += 1

    def _send(self, write: Callable[[IO[bytes]], None]) -> None:
        """Run ``write`` on ffmpeg's stdin; if ffmpeg has stopped, abort and say why."""
        try:
            write(self._proc.stdin)
        except OSError as exc:  # BrokenPipeError and the like
            try:
                self._proc.wait(timeout=10)  # let it finish explaining
            except subprocess.TimeoutExpired:
                pass
            message = f"ffmpeg stopped while encoding {self.dst}: {_tail(_read_log(self._log))}"
            self.abort()
            raise VideoError(message) from exc

    # -- ending

    def close(self) -> Path:
        """Finish encoding, add the audio, and move the result onto ``dst``; returns ``dst``."""
        if self._proc is None:
            raise VideoError(f"VideoWriter for {self.dst} is closed")
        try:
            self._finish_encoder()
            (self._with_audio() if self.audio_from is not None else self._video).commit()
        except BaseException:
            self.abort()
            raise
        finally:
            self._cleanup()
        if self._moved:
            warnings.warn(f"{self._moved} frame(s) written to {self.dst} had a time at or before the previous "
                          f"frame's (damaged timestamps?); each was moved one tick ({self.time_base} s) after it",
                          stacklevel=2)
        return self.dst

    def _finish_encoder(self) -> None:
        proc, self._proc = self._proc, None
        try:
            proc.stdin.close()
        except OSError:
            pass  # a broken pipe shows up in the return code below
        try:
            status = proc.wait()
        except BaseException:
            _stop_process(proc)
            raise
        if self.frames_written == 0:
            raise VideoError(f"no frames were written to {self.dst}; not creating an empty video")
        if status != 0:
            raise VideoError(f"ffmpeg failed writing {self.dst}: {_tail(_read_log(self._log))}")

    def _with_audio(self) -> PendingFile:
        """Mux encoded video + ``audio_from``'s audio (copied; AAC fallback) into a new temporary."""
        self._muxed = PendingFile(self.dst, "mux", VideoError)
        proc = _run(self._mux_args("copy"), timeout=3600)
        if proc.returncode == 0:
            return self._muxed
        if not re.search(r"not currently supported in container|Could not find tag for codec", proc.stderr):
            raise VideoError(f"cannot add the audio of {self.audio_from} to {self.dst}: {_tail(proc.stderr)}")
        codecs = ", ".join(probe_audio(self.audio_from))
        if not self.audio_fallback:
            raise VideoError(f"a {self.dst.suffix} file cannot hold the audio codec(s) {codecs} of {self.audio_from} "
                             f"unchanged; write .mkv instead, or allow re-encoding (audio_fallback=True)")
        warnings.warn(f"{self.dst.suffix} cannot hold audio codec(s) {codecs} of {self.audio_from}: "
                      f"re-encoding the audio to AAC 192 kb/s (write .mkv to keep it unchanged)", stacklevel=3)
        proc = _run(self._mux_args("aac"), timeout=3600)
        if proc.returncode != 0:
            raise VideoError(f"cannot re-encode the audio of {self.audio_from} for {self.dst}: {_tail(proc.stderr)}")
        return self._muxed

    def _mux_args(self, audio_codec: str) -> list[str]:
        """Both inputs keep their timestamps (``-copyts``); the audio's are counted from its file's
        start, like the video's (``-itsoffset``), so what was in sync stays in sync."""
        bitrate = ["-b:a", "192k"] if audio_codec != "copy" else []
        return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-copyts",
                "-i", str(self._video.path), "-itsoffset", f"{-float(self._audio_start):.6f}",
                "-i", str(self.audio_from), "-map", "0:v:0", "-map", "1:a",
                "-c:v", "copy", "-c:a", audio_codec, *bitrate, *self._faststart(), "-f", self._format,
                str(self._muxed.path)]

    def abort(self) -> None:
        """Stop ffmpeg and remove every temporary; ``dst`` is left as it was. Never raises for a
        temporary it cannot remove (it warns), so the error that led here is the one reported."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            _stop_process(proc)
        self._cleanup()

    def _cleanup(self) -> None:
        for pending in (self._video, self._muxed):
            if pending is not None:
                pending.discard()
        self._log.close()

    def __del__(self) -> None:
        """A writer dropped without close() leaves no half-written temporary behind."""
        if getattr(self, "_proc", None) is not None:
            try:
                self.abort()
            except Exception:
                pass

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self._proc is not None:
            self.close()


_FINEST_TICK = Fraction(1, 1_000_000_000)  # the frames reach ffmpeg with nanosecond times


def _output_tick(time_base: Fraction | None, fps: Fraction) -> Fraction:
    """The writer's time base: ``time_base`` checked, or ``1/fps.numerator`` (holds n / fps exactly)."""
    if time_base is None:
        return max(Fraction(1, fps.numerator), _FINEST_TICK)
    try:
        tick = Fraction(time_base)
    except (ValueError, ZeroDivisionError, TypeError) as exc:
        raise VideoError(f"invalid time base {time_base!r}") from exc
    if not _FINEST_TICK <= tick <= 1:
        raise VideoError(f"time base must be between 1 ns and 1 s, not {time_base}")
    return tick


def _positive_size(width: int, height: int) -> tuple[int, int]:
    if int(width) != width or int(height) != height or width <= 0 or height <= 0:
        raise VideoError(f"frame size must be positive integers, not {width}x{height}")
    return int(width), int(height)


def _positive_fps(fps: Fraction | int | float | str) -> Fraction:
    """The rate as an exact fraction ('30000/1001', Fraction, int; floats to 1/1001 steps)."""
    try:
        rate = Fraction(fps).limit_denominator(1001) if isinstance(fps, float) else Fraction(fps)
    except (ValueError, ZeroDivisionError, TypeError) as exc:
        raise VideoError(f"invalid frame rate {fps!r}") from exc
    if rate <= 0:
        raise VideoError(f"frame rate must be positive, not {fps!r}")
    return rate


def _container_for(dst: Path) -> str:
    try:
        return _CONTAINERS[dst.suffix.lower()]
    except KeyError:
        raise VideoError(f"cannot write {dst}: H.264 video goes in {', '.join(_CONTAINERS)}, "
                         f"not {dst.suffix or 'a file without extension'}") from None


def _refuse_inputs(dst: Path, inputs: Iterable[PathLike]) -> None:
    """Never write over an input (paths resolved, so links and ../ tricks count)."""
    if dst.is_dir():
        raise VideoError(f"output {dst} is a folder; give a file name")
    target = dst.resolve()
    for source in inputs:
        if Path(source).resolve() == target:
            raise VideoError(f"refusing to overwrite the input {source}; choose another output path")


# ----------------------------------------------------------------------------------------- transcode


@dataclass(frozen=True)
class VideoStats:
    """What :func:`transcode` did and how fast."""

    frames_in: int
    frames_out: int
    seconds: float
    fps: float  # frames_out / seconds, end to end (decode + fn + encode + mux)


def transcode(src: PathLike, dst: PathLike, fn: Callable[[np.ndarray], np.ndarray], progress: bool = True,
              refresh_every: int | None = None, *, quality: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET,
              info: VideoInfo | None = None) -> VideoStats:
    """Write ``fn(frame)`` for every frame of ``src`` to ``dst``: same size, every frame at its time
    in ``src`` (a variable rate stays variable, see :func:`_timeline`), ``src``'s audio kept in sync.

    ``src`` is only read. ``progress`` shows a tqdm bar with ETA on stderr, out of the true frame
    count; ``refresh_every`` redraws it every that many frames (None: tqdm's own time-based refresh).
    Decoding runs ahead in a thread. ``info``: ``probe_video(src)`` when the caller already has it
    (saves a second ffmpeg run).
    """
    from tqdm.auto import tqdm

    src = _existing_file(src, VideoError)
    info = info or probe_video(src)
    tick, place = _timeline(info)
    start = time.perf_counter()
    frames_in = 0
    refresh = {"miniters": refresh_every, "mininterval": 0} if refresh_every else {}
    with (VideoWriter(dst, info.width, info.height, info.fps, audio_from=src if info.has_audio else None,
                      quality=quality, preset=preset, inputs=[src], time_base=tick) as writer,
          closing(_decode(src, info, prefetch=4)) as frames,
          tqdm(total=info.frame_count, unit="frame", disable=not progress, desc=src.name, **refresh) as bar):
        for pts, frame in frames:
            frames_in += 1
            writer.write(fn(frame), place(pts))
            bar.update()
    seconds = time.perf_counter() - start
    return VideoStats(frames_in, writer.frames_written, seconds, writer.frames_written / seconds if seconds else 0.0)


def _timeline(info: VideoInfo) -> tuple[Fraction, Callable[[Fraction], Fraction]]:
    """The output tick for ``info``'s video, and where each source time goes on it.

    Variable rate: the source's own tick, every time unchanged. Constant rate: a tick that divides
    both the source's tick and one frame (1 / lcm of the denominators), and a time within half a
    source tick of a whole number of frames after the first frame (plus half a microsecond, the
    rounding of the file's start time) is put exactly there, so a constant rate comes out exact, e.g. 1001/30000 s steps
    for 30000/1001 fps even from a millisecond-based (.mkv, .webm) source. No time moves by more
    than half a source tick.
    """
    source_tick = max(info.time_base or Fraction(1, info.fps.numerator), _FINEST_TICK)
    if info.variable_rate:
        return source_tick, lambda pts: pts
    ticks_per_second = math.lcm(info.fps.numerator, source_tick.denominator)
    if ticks_per_second > 1 / _FINEST_TICK:
        return source_tick, lambda pts: pts
    tick = Fraction(1, ticks_per_second)
    tolerance = source_tick / 2 + Fraction(1, 2_000_000)
    origin: list[Fraction] = []  # the first frame's time, on the output tick

    def place(pts: Fraction) -> Fraction:
        if not origin:
            origin.append(round(pts / tick) * tick)
        on_grid = origin[0] + round((pts - origin[0]) * info.fps) / info.fps
        return on_grid if abs(pts - on_grid) <= tolerance else pts

    return tick, place
