"""Video in and out through the ffmpeg binary of imageio-ffmpeg: frames in, frames out, audio kept.

Decisions (see also each function):

* **Kind by content.** :func:`media_kind` looks at magic bytes first (PNG, JPEG, BMP, TIFF, WebP,
  GIF), then asks ffmpeg. A GIF with two or more frames is a ``"video"`` (read with
  :func:`read_frames`); a single-frame GIF is an ``"image"`` when OpenCV can read GIFs, else a
  one-frame ``"video"``. APNG and animated WebP count as images (their first frame).
* **Rotation.** ffmpeg's autorotate is left on: frames come out upright, ``VideoInfo.width`` and
  ``height`` are the displayed (rotated) size and ``VideoInfo.rotation`` records what the file
  said. Written videos hold upright pixels and no rotation tag. Sample aspect ratio is ignored.
* **Frame rate.** ``VideoInfo.fps`` is the stream's nominal rate as an exact fraction (what
  ffmpeg's filter graph receives, e.g. ``30000/1001``). Every decoded frame is returned once
  (``-fps_mode passthrough``); variable-rate sources are re-timed to that constant rate on write.
* **Encoding.** H.264 (libx264), yuv420p, CRF 17 (visually lossless), BT.709 matrix and tags, mp4
  ``+faststart``. Odd widths/heights cannot be stored in 4:2:0, so such frames get one replicated
  column/row (the output is 1 px larger; ``VideoWriter.output_size`` says so).
* **Audio.** On close, every audio stream of ``audio_from`` is copied packet for packet
  (``-c:a copy``), all of it, even if longer than the video. If the container cannot hold the
  codec (e.g. ``pcm_alaw`` in mp4), the audio is re-encoded to AAC with a :class:`UserWarning`,
  or, with ``audio_fallback=False``, a :class:`VideoError` names the codec and a container that
  holds it (.mkv).
* **Safety.** Output goes to hidden temporary files next to ``dst``; only a fully successful close
  renames onto ``dst``. Any error removes the temporaries and leaves an existing ``dst`` as it was.
  Inputs are only ever read, and ``dst`` may not be one of them.
* **Damaged input.** ffmpeg conceals broken data and goes on; :func:`read_frames` then warns
  (:class:`UserWarning` with ffmpeg's messages) instead of silently returning fewer frames.
"""

from __future__ import annotations

import functools
import os
import queue
import re
import secrets
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

from .errors import ImageError, MediaError, VideoError
from .image_formats import image_format as _image_format, looks_like_text, not_an_image
from .image_io import check_image_file

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


def _run(args: list[str], timeout: float = _PROBE_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a short ffmpeg command and capture its text output."""
    try:
        return subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=timeout,
                              stdin=subprocess.DEVNULL)
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
    (:func:`~mfs_fast.image_io.check_image_file`); anything else but text is asked of ffmpeg.
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
    fps: Fraction
    frame_count: int | None  # duration x fps, rounded: approximate (None when no duration)
    duration: float | None  # seconds, of the whole file (audio included)
    has_audio: bool
    audio_codec: str | None  # codec of the first audio stream
    audio_codecs: tuple[str, ...] = ()
    rotation: int = 0  # degrees stated by the display matrix (frames are returned upright)
    avg_fps: float | None = None  # average rate as ffmpeg prints it (differs from fps when variable)
    video_codec: str | None = None


@dataclass
class _Header:
    """The input section of ``ffmpeg -i`` output, parsed."""

    container: str | None = None
    duration: float | None = None
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
    path = _existing_file(path, MediaError)
    header = _parse_header(_run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]).stderr)
    if header.container is None:
        raise MediaError(f"cannot read audio from {path}: {header.error}")
    return header.audio_codecs


def probe_video(path: PathLike) -> VideoInfo:
    """Size, exact frame rate, duration and audio of a video, from one short ffmpeg run.

    ffmpeg decodes the first frame through ``showinfo``, which states the exact rate and the size
    after autorotation, i.e. exactly the frames :func:`read_frames` returns.
    """
    path = _existing_file(path, VideoError)
    proc = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:V:0", "-frames:v", "1",
                 "-vf", "showinfo", "-f", "null", "-"])
    header = _parse_header(proc.stderr)
    if header.container is None:
        raise VideoError(f"cannot open {path} as a video: {header.error}")
    if not header.has_video:
        raise VideoError(f"{path} has no video stream (container {header.container})")
    rate = re.search(r"config in time_base: \S+, frame_rate: (\d+)/(\d+)", proc.stderr)
    size = re.search(r" s:(\d+)x(\d+) ", proc.stderr)
    if proc.returncode != 0 or size is None:
        raise VideoError(f"cannot decode a frame of {path}: {_tail(proc.stderr)}")
    fps = _frame_rate(rate, header.avg_fps, path)
    duration = header.duration
    return VideoInfo(
        width=int(size.group(1)), height=int(size.group(2)), fps=fps,
        frame_count=None if duration is None else max(1, round(duration * fps)),
        duration=duration, has_audio=bool(header.audio_codecs),
        audio_codec=header.audio_codecs[0] if header.audio_codecs else None,
        audio_codecs=header.audio_codecs, rotation=header.rotation, avg_fps=header.avg_fps,
        video_codec=header.video_codec)


def _frame_rate(rate: re.Match | None, avg_fps: float | None, path: Path) -> Fraction:
    """The exact nominal rate; the printed average (to 1/1001 steps) only when that is all there is."""
    if rate and int(rate.group(1)) > 0 and int(rate.group(2)) > 0:
        return Fraction(int(rate.group(1)), int(rate.group(2)))
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
    return _decode(path, probe_video(path), prefetch)


def _decode(path: Path, info: VideoInfo, prefetch: int) -> Iterator[np.ndarray]:
    """Frames of ``path`` at ``info``'s size; ffmpeg is stopped however the iteration ends."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:V:0",
         "-fps_mode", "passthrough", "-s", f"{info.width}x{info.height}", "-pix_fmt", "bgr24",
         "-f", "rawvideo", "pipe:1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, bufsize=0)
    _grow_pipe(proc.stdout, info.width * info.height * 3)
    reader = None
    try:
        frames = _raw_frames(proc.stdout, info.height, info.width, path)
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
        log.close()


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
    """Encode BGR frames to H.264 and, on a successful close, add ``audio_from``'s audio unchanged.

    ``dst`` appears complete or not at all: frames go to a hidden temporary file in ``dst``'s
    folder, which an error (in the ``with`` body, a wrong-size frame, ffmpeg failing) removes.
    ``quality`` is the x264 CRF (0 lossless .. 51; 17 is visually lossless). ``inputs`` are further
    paths ``dst`` must not be (``audio_from`` always is one).
    """

    def __init__(self, dst: PathLike, width: int, height: int, fps: Fraction | int | float | str,
                 audio_from: PathLike | None = None, quality: int = DEFAULT_CRF, *,
                 preset: str = DEFAULT_PRESET, audio_fallback: bool = True, inputs: Iterable[PathLike] = ()):
        self.dst = Path(dst)
        self.width, self.height = _positive_size(width, height)
        self.fps = _positive_fps(fps)
        self.output_size = (self.width + self.width % 2, self.height + self.height % 2)
        self.frames_written = 0
        self.audio_fallback = audio_fallback
        self._format = _container_for(self.dst)
        _refuse_inputs(self.dst, [*inputs, *([audio_from] if audio_from is not None else [])])
        self.audio_from = self._audio_source(audio_from)
        if not 0 <= int(quality) <= 51:
            raise VideoError(f"quality is an x264 CRF between 0 and 51, not {quality}")
        _require_libx264()
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        self._video_tmp = self._temp_path()
        self._muxed_tmp: Path | None = None
        self._log = tempfile.TemporaryFile()
        self._proc: subprocess.Popen | None = subprocess.Popen(
            self._encoder_args(int(quality), preset), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=self._log, bufsize=0)
        _grow_pipe(self._proc.stdin, self.output_size[0] * self.output_size[1] * 3)

    # -- setup helpers

    def _audio_source(self, audio_from: PathLike | None) -> Path | None:
        """``audio_from`` when it has audio, None when it has none (nothing to mux)."""
        if audio_from is None:
            return None
        return Path(audio_from) if probe_audio(audio_from) else None

    def _temp_path(self, tag: str = "part") -> Path:
        """A new hidden name next to ``dst`` (ffmpeg creates it with ``-n``, never overwriting)."""
        return self.dst.with_name(f".{self.dst.stem}.{secrets.token_hex(6)}.{tag}{self.dst.suffix}")

    def _encoder_args(self, crf: int, preset: str) -> list[str]:
        w, h = self.output_size
        return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-n",
                "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-framerate", str(self.fps), "-i", "pipe:0",
                "-map", "0:v", "-vf", _TO_BT709,
                "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                *self._faststart(), "-f", self._format, str(self._video_tmp)]

    def _faststart(self) -> list[str]:
        return ["-movflags", "+faststart"] if self._format in ("mp4", "mov") else []

    # -- frames

    def write(self, frame: np.ndarray) -> None:
        """Append one H x W x 3 uint8 BGR frame; a wrong one aborts the whole file and raises."""
        if self._proc is None:
            raise VideoError(f"VideoWriter for {self.dst} is closed")
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != (self.height, self.width, 3):
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            self.abort()
            raise VideoError(f"frame {self.frames_written} for {self.dst} is {got}; expected uint8 "
                             f"{(self.height, self.width, 3)}; nothing was written")
        if self.output_size != (self.width, self.height):
            frame = cv2.copyMakeBorder(frame, 0, self.height % 2, 0, self.width % 2, cv2.BORDER_REPLICATE)
        try:
            self._proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
        except (BrokenPipeError, OSError) as exc:
            message = f"ffmpeg stopped while encoding {self.dst}: {_tail(_read_log(self._log))}"
            self.abort()
            raise VideoError(message) from exc
        self.frames_written += 1

    # -- ending

    def close(self) -> Path:
        """Finish encoding, add the audio, and move the result onto ``dst``; returns ``dst``."""
        if self._proc is None:
            raise VideoError(f"VideoWriter for {self.dst} is closed")
        try:
            self._finish_encoder()
            final = self._with_audio() if self.audio_from is not None else self._video_tmp
            os.replace(final, self.dst)
        except BaseException:
            self.abort()
            raise
        self._cleanup()
        return self.dst

    def _finish_encoder(self) -> None:
        proc, self._proc = self._proc, None
        try:
            proc.stdin.close()
        except OSError:
            pass  # a broken pipe shows up in the return code below
        if proc.wait() != 0:
            raise VideoError(f"ffmpeg failed writing {self.dst}: {_tail(_read_log(self._log))}")
        if self.frames_written == 0:
            raise VideoError(f"no frames were written to {self.dst}; not creating an empty video")

    def _with_audio(self) -> Path:
        """Mux encoded video + ``audio_from``'s audio (copied; AAC fallback) into a new temporary."""
        self._muxed_tmp = self._temp_path("mux")
        proc = _run(self._mux_args("copy"), timeout=3600)
        if proc.returncode == 0:
            return self._muxed_tmp
        Path(self._muxed_tmp).unlink(missing_ok=True)
        if not re.search(r"not currently supported in container|Could not find tag for codec", proc.stderr):
            raise VideoError(f"cannot add the audio of {self.audio_from} to {self.dst}: {_tail(proc.stderr)}")
        codecs = ", ".join(probe_video(self.audio_from).audio_codecs)
        if not self.audio_fallback:
            raise VideoError(f"a {self.dst.suffix} file cannot hold the audio codec(s) {codecs} of {self.audio_from} "
                             f"unchanged; write .mkv instead, or allow re-encoding (audio_fallback=True)")
        warnings.warn(f"{self.dst.suffix} cannot hold audio codec(s) {codecs} of {self.audio_from}: "
                      f"re-encoding the audio to AAC 192 kb/s (write .mkv to keep it unchanged)", stacklevel=3)
        proc = _run(self._mux_args("aac"), timeout=3600)
        if proc.returncode != 0:
            raise VideoError(f"cannot re-encode the audio of {self.audio_from} for {self.dst}: {_tail(proc.stderr)}")
        return self._muxed_tmp

    def _mux_args(self, audio_codec: str) -> list[str]:
        bitrate = ["-b:a", "192k"] if audio_codec != "copy" else []
        return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-n",
                "-i", str(self._video_tmp), "-i", str(self.audio_from), "-map", "0:v:0", "-map", "1:a",
                "-c:v", "copy", "-c:a", audio_codec, *bitrate, *self._faststart(), "-f", self._format,
                str(self._muxed_tmp)]

    def abort(self) -> None:
        """Stop ffmpeg and remove every temporary; ``dst`` is left as it was."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            _stop_process(proc)
        self._cleanup()

    def _cleanup(self) -> None:
        for tmp in (self._video_tmp, self._muxed_tmp):
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
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
    """Write ``fn(frame)`` for every frame of ``src`` to ``dst``, same size and rate, ``src``'s audio kept.

    ``src`` is only read. ``progress`` shows a tqdm bar with ETA on stderr; ``refresh_every``
    redraws it every that many frames (None: tqdm's own time-based refresh). Decoding runs ahead in a thread.
    ``info``: ``probe_video(src)`` when the caller already has it (saves a second ffmpeg run).
    """
    from tqdm.auto import tqdm

    src = _existing_file(src, VideoError)
    info = info or probe_video(src)
    _warn_if_variable_rate(src, info)
    start = time.perf_counter()
    frames_in = 0
    refresh = {"miniters": refresh_every, "mininterval": 0} if refresh_every else {}
    with (VideoWriter(dst, info.width, info.height, info.fps, audio_from=src if info.has_audio else None,
                      quality=quality, preset=preset, inputs=[src]) as writer,
          closing(_decode(src, info, prefetch=4)) as frames,
          tqdm(total=info.frame_count, unit="frame", disable=not progress, desc=src.name, **refresh) as bar):
        for frame in frames:
            frames_in += 1
            writer.write(fn(frame))
            bar.update()
    seconds = time.perf_counter() - start
    return VideoStats(frames_in, writer.frames_written, seconds, writer.frames_written / seconds if seconds else 0.0)


def _warn_if_variable_rate(src: Path, info: VideoInfo) -> None:
    """Variable-rate sources are written at a constant rate: say so when that shifts timing."""
    if info.avg_fps and abs(info.avg_fps - float(info.fps)) > 0.01 * float(info.fps) + 0.01:
        warnings.warn(f"{src} looks variable-rate (average {info.avg_fps} fps, nominal {info.fps}); "
                      f"frames are written at a constant {info.fps} fps", stacklevel=3)
