"""Pipelined ``swap_video`` with one swap thread vs two (``SHARED_SWAP_WORKERS``), alternating in
one process so the host's drift hits both alike; medians for bench/RESULTS.md.

    .venv/bin/python bench/swap_workers.py CLIP [--rounds 6] [--precision float32|bfloat16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from mfs_fast import Swapper, pipeline
from mfs_fast.demo import SOURCE_PHOTO


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip", type=Path)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--precision", default="float32")
    args = parser.parse_args()
    swapper = Swapper(SOURCE_PHOTO, precision=args.precision)
    fps: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for workers in fps:
                pipeline.SHARED_SWAP_WORKERS = workers
                stats = swapper.swap_video(args.clip, Path(tmp) / "out.mp4", progress=False)
                fps[workers].append(stats.fps)
                stages = " ".join(f"{t.name} {t.ms_per_item:.1f}" for t in stats.stages)
                print(f"round {round_ + 1}, {workers} swap thread(s): {stats.fps:.1f} FPS ({stages} ms a frame)", flush=True)
    for workers, values in fps.items():
        print(f"{workers} swap thread(s): {' / '.join(f'{v:.1f}' for v in values)} (median {statistics.median(values):.1f})")


if __name__ == "__main__":
    main()
