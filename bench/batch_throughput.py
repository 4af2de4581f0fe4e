"""Throughput of ``mfs-fast batch`` (frames/s, wall clock) on a batch of the shared clips: the local
engine with 1 worker (all cores' threads) and with 2 workers (1 thread each), and the Ray engine
(a local Ray runtime, one 1-CPU actor per core), one after the other in one run.

The wall time is the whole batch as a user sees it: probing, worker start-up (weights and identity,
once per worker; Ray's runtime for the Ray engine), swapping, encoding, audio mux, results log.

    PYTHONPATH=$PWD .venv/bin/python bench/batch_throughput.py [CLIP ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "assets"
DEFAULT_CLIPS = ("videos/talking_d12.mp4", "videos/talking_d19.mp4")
SOURCE = "images/obama_1.jpg"


def run(clips: list[Path], engine: str, workers: int, threads: int) -> dict:
    from mfs_fast.batch import run_batch

    with tempfile.TemporaryDirectory(prefix="mfs-batch-bench-") as scratch:
        job = Path(scratch) / "job"
        job.mkdir()
        for clip in clips:
            shutil.copy(clip, job / clip.name)
        summary, _ = run_batch(job, Path(scratch) / "out", SHARED / SOURCE, engine=engine, workers=workers,
                               threads=threads, segment_seconds=0, progress=False)
    assert summary.failed == 0, summary
    return {"engine": engine, "workers": workers, "threads": threads, "frames": summary.frames,
            "seconds": round(summary.seconds, 2), "fps": round(summary.frames / summary.seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", type=Path, help="videos (default: two shared talking-head clips)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    clips = args.clips or [SHARED / clip for clip in DEFAULT_CLIPS]
    missing = [str(c) for c in clips if not c.is_file()]
    if missing:
        sys.exit(f"missing clips: {', '.join(missing)} (the shared assets are in ../shared/assets)")
    warnings.simplefilter("ignore")
    rows = [run(clips, "local", 1, 2), run(clips, "local", 2, 1)]
    try:
        import ray  # noqa: F401

        rows.append(run(clips, "ray", 2, 1))
    except ImportError:
        print("ray is not installed: the Ray engine is not measured (pip install 'mfs_fast[ray]')", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"clips: {', '.join(c.name for c in clips)}")
    print(f"{'engine':<8}{'workers':>8}{'threads':>8}{'frames':>8}{'seconds':>9}{'frames/s':>10}")
    for row in rows:
        print(f"{row['engine']:<8}{row['workers']:>8}{row['threads']:>8}{row['frames']:>8}{row['seconds']:>9.1f}"
              f"{row['fps']:>10.2f}")


if __name__ == "__main__":
    main()
