"""Encoding frames to H.264, each at its own time, with the audio of another file added on close.

* **Timing.** :class:`VideoWriter` takes each frame's timestamp (e.g. from
  :func:`~mfs_fast.media.reader.read_timed_frames`) and pipes the frames to the encoder as a small
  Matroska stream (:mod:`mfs_fast.media.mkv_stream`), because raw video on a pipe has no timestamps
  and would be re-timed at a constant rate, putting variable-rate (phone) clips out of sync with
  their audio. The encoder's time base is a multiple of the source's, so timestamps come out
  exact: variable rate in, the same variable rate out; constant rate in, the same exact rational
  rate out (``30000/1001`` stays 1001 ticks of 1/30000 s).
* **Encoding.** H.264 (libx264), CRF 17 (visually lossless), BT.709 matrix and tags, mp4
  ``+faststart``. Preset ``ultrafast`` by default: on a 2-core CPU the encoder shares the cores
  with swapping, and at 720p it costs ~8 ms of CPU per frame there against ~16 ms at
  ``veryfast``, for files ~4x larger at the same CRF (bench/RESULTS.md); ``preset`` trades back. Even sizes use yuv420p (plays everywhere). Odd widths/heights cannot be stored in
  4:2:0 (chroma is subsampled by 2 and H.264 crops in steps of 2), so they use yuv444p (High 4:4:4
  profile): the output keeps the exact size, at the cost of players without 4:4:4 support
  (some hardware decoders, Safari). Frames are stored upright, with no rotation tag.
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
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import warnings
from fractions import Fraction
from pathlib import Path
from typing import IO, Callable, Iterable, Mapping

import numpy as np

from ..atomic import PendingFile
from ..errors import VideoError
from . import mkv_stream
from .ffmpeg import _grow_pipe, _popen, _read_log, _require_libx264, _run, _stop_process, _tail, ffmpeg_exe
from .image import refuse_inputs
from .probe import PathLike, _media_header, probe_audio
from .yuv import bgr_to_i420, i420_encoding, i420_size

DEFAULT_CRF = 17
DEFAULT_PRESET = "ultrafast"
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# BGR -> limited-range BT.709 YCbCr, tagged as such (matrix, primaries, transfer) so players agree.
# accurate_rnd removes swscale's ~2-level darkening bias, area averages the chroma it subsamples:
# the round trip error on real clips drops from 2.3 to 1.1 levels (mean abs), at no measurable cost.
# Frames that come as I420 (media.yuv, the same conversion done by the C++ core) only get the tags.
_BT709_TAGS = "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv"
_TO_BT709 = "scale=out_color_matrix=bt709:out_range=tv:flags=area+accurate_rnd," + _BT709_TAGS
_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


class VideoWriter:
    """Encode BGR frames to H.264, each at its own time, and on a successful close add
    ``audio_from``'s audio unchanged.

    ``dst`` appears complete or not at all: frames go to a hidden temporary in ``dst``'s folder,
    which any error or interrupt (in the ``with`` body, a wrong-size frame, ffmpeg failing)
    removes. ``quality`` is the x264 CRF (0 lossless .. 51; 17 is visually lossless). ``inputs``
    are further paths ``dst`` must not be (``audio_from`` always is one). ``tags``: container
    metadata to write (e.g. ``{"comment": ...}``, the swap's provenance note).

    Timing: :meth:`write` takes each frame's time in seconds (default: frame n at n / ``fps``),
    rounded to ``time_base``, the output's tick (default ``1/fps.numerator``, which holds every
    n / ``fps`` exactly; at least 1 ns). Audio is placed as in ``audio_from``: its file's start
    time is zero, the same zero :func:`~mfs_fast.media.reader.read_timed_frames` counts from.
    """

    def __init__(self, dst: PathLike, width: int, height: int, fps: Fraction | int | float | str,
                 audio_from: PathLike | None = None, quality: int = DEFAULT_CRF, *,
                 preset: str = DEFAULT_PRESET, audio_fallback: bool = True, inputs: Iterable[PathLike] = (),
                 time_base: Fraction | None = None, tags: Mapping[str, str] | None = None):
        self.dst = Path(dst)
        self.width, self.height = _positive_size(width, height)
        self.fps = _positive_fps(fps)
        self.time_base = _output_tick(time_base, self.fps)
        # 4:2:0 halves the chroma in both directions, so an odd size needs 4:4:4 to stay exact
        self.pixel_format = "yuv420p" if self.width % 2 == 0 and self.height % 2 == 0 else "yuv444p"
        # I420 on the pipe where the C++ core converts (half the bytes, no swscale in ffmpeg)
        self._i420 = np.empty(i420_size(self.height, self.width), np.uint8) if i420_encoding(self.width, self.height) else None
        self.frames_written = 0
        self.audio_fallback = audio_fallback
        self._metadata = [arg for key, value in (tags or {}).items() for arg in ("-metadata", f"{key}={value}")]
        self._format = _container_for(self.dst)
        refuse_inputs(self.dst, [*inputs, *([audio_from] if audio_from is not None else [])], VideoError)
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
            fourcc = mkv_stream.I420 if self._i420 is not None else mkv_stream.BGR24
            self._send(lambda pipe: pipe.write(mkv_stream.stream_header(self.width, self.height, frame_ns, fourcc)))
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
                "-f", "matroska", "-i", "pipe:0", "-map", "0:v", "-vf", _TO_BT709 if self._i420 is None else _BT709_TAGS, "-fps_mode", "passthrough",
                "-enc_time_base", f"{tick.numerator}:{tick.denominator}",
                "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", self.pixel_format,
                *self._metadata, *self._faststart(), "-f", self._format, str(self._video.path)]

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
        frame = np.ascontiguousarray(frame)
        pixels = memoryview(frame if self._i420 is None else bgr_to_i420(frame, self._i420)).cast("B")
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
        mux(["-i", str(self._video.path)], self._muxed.path, self._format, self.audio_from, self._audio_start,
            dst_name=self.dst, metadata=self._metadata, audio_fallback=self.audio_fallback)
        return self._muxed

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


def mux(video_input: list[str], out: Path, fmt: str, audio_from: Path | None, audio_start: Fraction = Fraction(0), *,
        dst_name: PathLike, metadata: list[str] = (), audio_fallback: bool = True) -> None:
    """Copy the video of the ffmpeg input ``video_input`` (e.g. ``["-i", file]``, or a concat list)
    into ``out`` (format ``fmt``), with every audio stream of ``audio_from`` when given: copied, or
    AAC with a warning where the container cannot hold the codec (``audio_fallback=False``: a
    VideoError naming a container that can). Both keep their timestamps (``-copyts``); the audio's
    are counted from its file's start (``-itsoffset``), like the video's, so what was in sync stays
    in sync. ``metadata``: ``-metadata`` arguments; ``dst_name``: the final file, for messages."""
    def args(audio_codec: str) -> list[str]:
        audio = [] if audio_from is None else ["-itsoffset", f"{-float(audio_start):.6f}", "-i", str(audio_from)]
        maps = ["-map", "0:v:0"] + ([] if audio_from is None else ["-map", "1:a", "-c:a", audio_codec])
        bitrate = ["-b:a", "192k"] if audio_codec != "copy" else []
        faststart = ["-movflags", "+faststart"] if fmt in ("mp4", "mov") else []
        return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-copyts", *video_input,
                *audio, *maps, "-c:v", "copy", *bitrate, *metadata, *faststart, "-f", fmt, str(out)]

    proc = _run(args("copy"), timeout=3600)
    if proc.returncode == 0:
        return
    if audio_from is None or not re.search(r"not currently supported in container|Could not find tag for codec",
                                           proc.stderr):
        what = f"add the audio of {audio_from} to" if audio_from is not None else "write the video of"
        raise VideoError(f"cannot {what} {dst_name}: {_tail(proc.stderr)}")
    suffix = Path(dst_name).suffix
    codecs = ", ".join(probe_audio(audio_from))
    if not audio_fallback:
        raise VideoError(f"a {suffix} file cannot hold the audio codec(s) {codecs} of {audio_from} "
                         f"unchanged; write .mkv instead, or allow re-encoding (audio_fallback=True)")
    warnings.warn(f"{suffix} cannot hold audio codec(s) {codecs} of {audio_from}: "
                  f"re-encoding the audio to AAC 192 kb/s (write .mkv to keep it unchanged)", stacklevel=4)
    proc = _run(args("aac"), timeout=3600)
    if proc.returncode != 0:
        raise VideoError(f"cannot re-encode the audio of {audio_from} for {dst_name}: {_tail(proc.stderr)}")


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
