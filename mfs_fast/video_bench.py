"""The whole video path timed as a user meets it: frames/s end to end (decode, faces, swap, encode),
ms per stage, queue depths and peak memory, the sequential and the pipelined path side by side,
and webcam mode's latency (the clip delivered at its frame rate, as a camera would).

Used by ``mfs-fast bench --pipeline VIDEO`` and ``mfs-fast swap --stats``. The stage times are
each stage's own work; in the pipelined path they overlap, so the frame rate is bounded by the
busiest stage and, on few cores, by their sum over the cores.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .media import VideoStats
from .backends.fused import default_threads as available_cpus
from .memory import RssSampler, anonymous_bytes
from .pipeline import Swapper

if TYPE_CHECKING:
    from .webcam import LiveStats

MODES = {"sequential": False, "pipelined": True}


@dataclass(frozen=True)
class CpuTime:
    """CPU seconds of this process (every thread) and of its finished child processes (ffmpeg)."""

    process: float
    children: float

    @classmethod
    def now(cls) -> "CpuTime":
        children = os.times()  # their fields count children once waited for (0 where the OS has none)
        return cls(time.process_time(), children.children_user + children.children_system)

    def __sub__(self, other: "CpuTime") -> "CpuTime":
        return CpuTime(self.process - other.process, self.children - other.children)


@dataclass(frozen=True)
class VideoRun:
    """One timed pass over a video: ``mode`` (sequential or pipelined), its stats, its peak RSS, the
    CPU time it took (the share of the cores it kept busy says whether more overlap can help) and
    its peak own memory (:func:`~mfs_fast.memory.anonymous_bytes`: the RSS without library pages)."""

    mode: str
    stats: VideoStats
    peak_rss: int
    cpu: CpuTime = CpuTime(0.0, 0.0)
    peak_own: int = 0

    def as_dict(self) -> dict:
        return {"mode": self.mode, "frames": self.stats.frames_out, "seconds": self.stats.seconds,
                "fps": self.stats.fps, "peak_rss_mb": self.peak_rss / 2**20,
                "peak_own_mb": self.peak_own / 2**20,
                "cpu_ms_per_frame": {"process": self.cpu_ms(self.cpu.process), "ffmpeg": self.cpu_ms(self.cpu.children)},
                "stages": {t.name: {"ms_per_frame": t.ms_per_item, "mean_queue_depth": t.mean_queue_depth}
                           for t in self.stats.stages}}

    def cpu_ms(self, seconds: float) -> float:
        return 1e3 * seconds / max(self.stats.frames_out, 1)


def swap_video_timed(swapper: Swapper, video: str | Path, output: str | Path, mode: str = "pipelined",
                     **options) -> VideoRun:
    """``swapper.swap_video`` with its memory sampled while the video streams (after the source
    nets that ``swap_video`` frees first are gone: with the official weights, 725 MB at load,
    ~490 MB at 1080p); ``options`` go to ``swap_video``."""
    swapper.release_source_nets()
    start = CpuTime.now()
    with RssSampler() as rss, RssSampler(measure=anonymous_bytes) as own:
        stats = swapper.swap_video(video, output, pipelined=MODES[mode], **options)
    return VideoRun(mode, stats, rss.peak, CpuTime.now() - start, own.peak)


def bench_video(swapper: Swapper, video: str | Path, modes: tuple[str, ...] = tuple(MODES), rounds: int = 1,
                **options) -> list[VideoRun]:
    """Each of ``modes`` over ``video``, alternating, ``rounds`` times; outputs go to a temporary
    folder that is removed. ``options`` go to ``swap_video`` (every, preset, quality, ...)."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="mfs-bench-") as folder:
        for _ in range(rounds):
            for mode in modes:
                runs.append(swap_video_timed(swapper, video, Path(folder) / f"{mode}{Path(video).suffix}", mode,
                                             progress=False, **options))
    return runs


def bench_live(swapper: Swapper, video: str | Path, every: int = 5) -> "LiveStats":
    """Webcam mode timed without a camera: ``video`` delivered at its own frame rate through the
    live loop (newest frame only, no window): FPS and latency from capture to output."""
    from .webcam import run_live

    return run_live(swapper, camera=str(video), window=False, virtual_camera=False, every=every, realtime=True)


def live_line(stats: "LiveStats", clip_fps: float) -> str:
    return (f"live       {stats.fps:>7.1f}  the clip delivered at its {clip_fps:.0f} FPS as by a camera (webcam mode): "
            f"latency capture to output {stats.latency_ms(50):.1f} ms median, {stats.latency_ms(95):.1f} ms p95, "
            f"{stats.dropped} late frame(s) skipped")


def stage_table(runs: list[VideoRun]) -> list[str]:
    """Lines of a table: FPS, ms per frame in each stage, mean queue depth in front of each, peak RSS
    and the process's own part of it."""
    names = [t.name for t in runs[0].stats.stages]
    ms = "".join(f"{name:>8}" for name in names)
    header = f"{'mode':<11}{'FPS':>7}  {'ms per frame:':<13}{ms}  | queue in front:{ms}  | peak RSS, own"
    lines = [header]
    for run in runs:
        stages = run.stats.stages
        lines.append(f"{run.mode:<11}{run.stats.fps:>7.1f}  {'':<13}"
                     + "".join(f"{t.ms_per_item:>8.1f}" for t in stages) + f"  | {'':<15}"
                     + "".join(f"{t.mean_queue_depth:>8.1f}" for t in stages) + f"  | {run.peak_rss / 2**20:.0f} MB, own {run.peak_own / 2**20:.0f} MB")
    return lines


def limiting_stage(run: VideoRun) -> str:
    """Which stage bounds the pipelined frame rate, and what the stages add up to per frame."""
    stages = run.stats.stages
    busiest = min(stages, key=lambda t: t.items_per_second)
    total = sum(t.ms_per_item for t in stages)
    threads = f", {busiest.threads} frames at once" if busiest.threads > 1 else ""
    line = (f"busiest stage: {busiest.name}, {busiest.ms_per_item:.1f} ms per frame{threads} (alone it allows "
            f"{busiest.items_per_second:.0f} FPS); all stages together {total:.1f} ms of work per frame")
    if run.cpu.process <= 0 or run.stats.seconds <= 0:
        return line
    process, ffmpeg = run.cpu_ms(run.cpu.process), run.cpu_ms(run.cpu.children)
    busy = (run.cpu.process + run.cpu.children) / run.stats.seconds
    return (line + f"; CPU per frame {process:.1f} ms here + {ffmpeg:.1f} ms in ffmpeg: {busy:.2f} of "
            f"{available_cpus()} cores busy")
