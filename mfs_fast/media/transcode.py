"""A whole video through a per-frame function: decode, ``fn``, encode, the source's audio kept in sync."""

from __future__ import annotations

import math
import time
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Mapping

import numpy as np

from ..errors import VideoError
from .probe import PathLike, VideoInfo, _existing_file, probe_video
from .reader import _decode
from .writer import _FINEST_TICK, DEFAULT_CRF, DEFAULT_PRESET, VideoWriter


@dataclass(frozen=True)
class VideoStats:
    """What :func:`transcode` did and how fast."""

    frames_in: int
    frames_out: int
    seconds: float
    fps: float  # frames_out / seconds, end to end (decode + fn + encode + mux)


def transcode(src: PathLike, dst: PathLike, fn: Callable[[np.ndarray], np.ndarray], progress: bool = True,
              refresh_every: int | None = None, *, quality: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET,
              info: VideoInfo | None = None, tags: Mapping[str, str] | None = None) -> VideoStats:
    """Write ``fn(frame)`` for every frame of ``src`` to ``dst``: same size, every frame at its time
    in ``src`` (a variable rate stays variable, see :func:`_timeline`), ``src``'s audio kept in sync.

    ``src`` is only read. ``progress`` shows a tqdm bar with ETA on stderr, out of the true frame
    count; ``refresh_every`` redraws it every that many frames (None: tqdm's own time-based refresh).
    Decoding runs ahead in a thread. ``info``: ``probe_video(src)`` when the caller already has it
    (saves a second ffmpeg run). ``tags``: container metadata for ``dst`` (see :class:`VideoWriter`).
    """
    from tqdm.auto import tqdm

    src = _existing_file(src, VideoError)
    info = info or probe_video(src)
    tick, place = _timeline(info)
    start = time.perf_counter()
    frames_in = 0
    refresh = {"miniters": refresh_every, "mininterval": 0} if refresh_every else {}
    with (VideoWriter(dst, info.width, info.height, info.fps, audio_from=src if info.has_audio else None,
                      quality=quality, preset=preset, inputs=[src], time_base=tick, tags=tags) as writer,
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
