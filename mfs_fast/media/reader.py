"""Decoding a video into frames, each with its presentation time, through one ffmpeg process.

* **Timing.** Every frame keeps its presentation time. :func:`read_timed_frames` returns each
  decoded frame (``-fps_mode passthrough``, one per decoded frame) with its exact timestamp, read
  from the same ffmpeg process (``-stats_enc_pre``: one line per frame, flushed as it goes), on a
  timeline that starts at the file's start time (ffmpeg's usual zero point, shared with the audio).
  :class:`~mfs_fast.media.writer.VideoWriter` writes them back at those times.
* **Pixels.** Frames are BGR. A ``yuv420p`` stream (BT.601/BT.709, limited range) comes through
  the pipe as I420 and the C++ core converts it (:mod:`mfs_fast.media.yuv`); anything else is
  converted by ffmpeg.
* **Damaged input.** ffmpeg conceals broken data and goes on; :func:`read_frames` then warns
  (:class:`UserWarning` with ffmpeg's messages) instead of silently returning fewer frames.
"""

from __future__ import annotations

import os
import queue
import subprocess
import tempfile
import threading
import warnings
from contextlib import closing
from fractions import Fraction
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from ..errors import VideoError
from .ffmpeg import _grow_pipe, _popen, _read_log, _stop_process, _tail, ffmpeg_exe
from .probe import PathLike, VideoInfo, _existing_file, probe_video
from .yuv import I420Decoding, i420_decoding, i420_size


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
    i420 = i420_decoding(info.pixel_format, info.colour_space, info.colour_range)
    log = tempfile.TemporaryFile()
    stats_read, stats_write = os.pipe()
    try:
        proc = _popen(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-copyts", "-i", str(path), "-map", "0:V:0",
             "-fps_mode", "passthrough", "-enc_time_base", "demux", "-s", f"{info.width}x{info.height}",
             "-pix_fmt", "yuv420p" if i420 else "bgr24", "-stats_enc_pre", f"pipe:{stats_write}", "-stats_enc_pre_fmt", "{ptsi} {tbi}",
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
        frames = _timed(_raw_frames(proc.stdout, info.height, info.width, path, i420), stats, info)
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


def _raw_frames(pipe: IO[bytes], height: int, width: int, path: Path,
                i420: I420Decoding | None = None) -> Iterator[np.ndarray]:
    """Exact-size BGR frames read straight into new arrays (no intermediate bytes objects); with
    ``i420``, the pipe carries I420, read into one reused buffer and converted into new arrays."""
    size = i420_size(height, width) if i420 else height * width * 3
    planes = np.empty(size, np.uint8) if i420 else None
    while True:
        frame = planes if i420 else np.empty((height, width, 3), np.uint8)
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
        yield i420.to_bgr(planes, height, width) if i420 else frame


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
