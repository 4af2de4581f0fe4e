"""Whole clips through ``swap_video``, the sequential and the pipelined path side by side, for
bench/RESULTS.md: a markdown table (FPS, ms per stage, queue depths, peak RSS) and a PNG of
frame time over the first clip.

    .venv/bin/python bench/pipeline_video.py CLIP [CLIP ...] [--presets veryfast ultrafast]
        [--plot bench/pipeline_frame_times.png]

Bundled starter weights and default backend, detector every 5 frames; each clip's passes
alternate sequential / pipelined per preset in one process. Frame time: the interval between
consecutive frames reaching the encoder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mfs_fast import Swapper
from mfs_fast.demo import SOURCE_PHOTO
from mfs_fast.media import probe_video
from mfs_fast.video_bench import VideoRun, bench_video


def markdown_rows(clip: Path, preset: str, runs: list[VideoRun]) -> list[str]:
    info = probe_video(clip)
    rows = []
    for run in runs:
        stages = {t.name: t for t in run.stats.stages}
        ms = " / ".join(f"{stages[n].ms_per_item:.1f}" for n in ("decode", "detect", "swap", "encode"))
        depth = " / ".join(f"{stages[n].mean_queue_depth:.1f}" for n in ("detect", "swap", "encode"))
        rows.append(f"| {clip.name} ({info.width}x{info.height}, {run.stats.frames_out} f) | {preset} | {run.mode} | "
                    f"**{run.stats.fps:.1f}** | {ms} | {depth} | {run.peak_rss / 2**20:.0f} MB |")
    return rows


def plot(runs: list[VideoRun], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=80)
    for run in runs:
        times = 1e3 * np.diff(np.asarray(run.stats.finished))
        ax.plot(np.arange(1, len(times) + 1), times, lw=0.8, label=f"{run.mode}: {run.stats.fps:.1f} FPS")
    ax.set(xlabel="frame", ylabel="ms since previous frame", title=title)
    ax.set_yscale("log")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--presets", nargs="+", default=["ultrafast"])
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    swapper = Swapper(SOURCE_PHOTO)
    print("| clip | x264 preset | path | FPS | ms per frame: decode / detect / swap / encode | "
          "queued before detect / swap / encode | peak RSS |")
    print("|---|---|---|---:|---|---|---:|")
    first: list[VideoRun] = []
    for clip in args.clips:
        for preset in args.presets:
            runs = bench_video(swapper, clip, preset=preset)
            print("\n".join(markdown_rows(clip, preset, runs)), flush=True)
            if not first:
                first = runs
    if args.plot:
        plot(first, f"{args.clips[0].name}, x264 {args.presets[0]}: frame time over the clip", args.plot)
        print(f"wrote {args.plot} ({args.plot.stat().st_size / 1e3:.0f} KB)")


if __name__ == "__main__":
    main()
