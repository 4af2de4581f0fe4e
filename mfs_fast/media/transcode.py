"""A whole video through per-frame stages: decode, ``fn``, encode (overlapping), the audio kept in sync."""

from __future__ import annotations

import math
import time
from array import array
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import VideoError
from .probe import PathLike, VideoInfo, _existing_file, probe_video
from .reader import _decode
from .stages import Stage, StagedRun, StageTiming, keep_tag
from .writer import _FINEST_TICK, DEFAULT_CRF, DEFAULT_PRESET, VideoWriter


@dataclass(frozen=True)
class VideoStats:
    """What :func:`transcode` did and how fast.

    ``stages``: the time each stage spent in its own work and the mean queue depth in front of
    it (decode, the ``fn`` stages, encode; see :mod:`mfs_fast.media.stages`). ``finished``:
    when each frame was handed to the encoder, in seconds from the start (frame times over a clip).
    """

    frames_in: int
    frames_out: int
    seconds: float
    fps: float  # frames_out / seconds, end to end (decode + fn + encode + mux)
    stages: tuple[StageTiming, ...] = ()
    finished: array = field(default_factory=lambda: array("d"))


FrameFn = Callable[[np.ndarray], np.ndarray]


def transcode(src: PathLike, dst: PathLike, fn: FrameFn | Sequence[Stage], progress: bool = True,
              refresh_every: int | None = None, *, quality: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET,
              info: VideoInfo | None = None, pipelined: bool = True, depth: int = 2,
              on_written: Callable[[np.ndarray], None] | None = None,
              tags: Mapping[str, str] | None = None) -> VideoStats:
    """Write ``fn(frame)`` for every frame of ``src`` to ``dst``: same size, every frame at its time
    in ``src`` (a variable rate stays variable, see :func:`_timeline`), ``src``'s audio kept in sync.

    ``fn``: a frame -> frame function, or ``(name, function)`` stages applied in turn (the first
    takes the frame, the last returns the frame to write). ``pipelined`` (default): decoding, each
    stage and encoding overlap, each in a thread of its own with at most ``depth`` frames queued
    between them (:class:`~mfs_fast.media.stages.StagedRun`); ``pipelined=False``: decoding runs
    ahead (``depth`` frames) and the stages and encoding take turns, as before. ``depth`` 2 kept
    720p as fast as 4 (64.4 vs 63.0 FPS, 8 alternating rounds) with ~34 MB less at 1080p
    (bench/RESULTS.md). ``on_written``:
    called with each frame once the encoder has it (e.g. to reuse its buffer).

    ``src`` is only read. ``progress`` shows a tqdm bar with ETA on stderr, out of the true frame
    count; ``refresh_every`` redraws it every that many frames (None: tqdm's own time-based refresh).
    ``info``: ``probe_video(src)`` when the caller already has it (saves a second ffmpeg run).
    ``tags``: container metadata for ``dst`` (see :class:`VideoWriter`).
    """
    from tqdm.auto import tqdm

    src = _existing_file(src, VideoError)
    info = info or probe_video(src)
    tick, place = _timeline(info)
    stages = [("fn", fn)] if callable(fn) else list(fn)
    start = time.perf_counter()
    refresh = {"miniters": refresh_every, "mininterval": 0} if refresh_every else {}
    with (VideoWriter(dst, info.width, info.height, info.fps, audio_from=src if info.has_audio else None,
                      quality=quality, preset=preset, inputs=[src], time_base=tick, tags=tags) as writer,
          tqdm(total=info.frame_count, unit="frame", disable=not progress, desc=src.name, **refresh) as bar):

        def encode(item: tuple[Fraction, np.ndarray]) -> None:
            pts, frame = item
            writer.write(frame, place(pts))
            bar.update()
            if on_written is not None:
                on_written(frame)

        run = StagedRun(_decode(src, info, prefetch=0), [(name, keep_tag(f)) for name, f in stages],
                        ("encode", encode), depth=depth, threaded=pipelined)
        run.run()
    seconds = time.perf_counter() - start
    finished = array("d", (t - start for t in run.done_at))
    return VideoStats(run.timings[0].items, writer.frames_written, seconds,
                      writer.frames_written / seconds if seconds else 0.0, tuple(run.timings), finished)


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
