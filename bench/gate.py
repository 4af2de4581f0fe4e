"""FPS regression gate: fail when a backend's IDN got more than 15 % slower than the baseline.

    .venv/bin/python bench/gate.py [--short] [--update]

Latencies are divided by a fixed calibration workload timed interleaved in the same run, so a
slower or busier machine moves both and the ratio stays. The calibration is a frozen PyTorch
depthwise/pointwise conv stack (torch is pinned in requirements.txt; none of this project's code
runs in it): it stresses the caches, vector units and memory like the IDN does. The first
calibration, a NumPy GEMM plus a memory pass, did not: on one EPYC VM it read fused at 5.3-6.4x
within minutes and 25 % off its baseline across hosts on unchanged code, because GEMM throughput
and the IDN's cache behaviour vary independently between hosts and neighbours.
The ratio still differs between CPU kinds (AVX-512 vs AVX2 kernels), so bench/baseline.json
keeps one baseline per machine tag (architecture, best fused kernel set, core count) and names
the calibration it was measured with; a machine without a matching one is reported and not
gated until `--update` adds it.

The gate also covers the whole pipelined video path (``video-pipeline``): seconds per frame of
``Swapper.swap_video`` (decode, detect/track, swap and encode overlapping) on a short synthetic
640x360 clip with one face, divided by the same calibration timed just before each pass.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mfs_fast import native
from mfs_fast.backends import available_backends, create_backend
from mfs_fast.models import FaceSwapModels

BASELINE = Path(__file__).with_name("baseline.json")
TOLERANCE = 0.15  # FPS may fall at most 15 % below the baseline


def machine_tag() -> str:
    """e.g. ``x86_64-avx2-2c``: what decides how the IDN's speed relates to the calibration."""
    isa = native.require_native().isas()[0] if native.AVAILABLE else "no-native"
    return f"{platform.machine()}-{isa}-{os.cpu_count()}c"


def load_baselines() -> dict[str, dict]:
    """Machine tag -> baseline entry, only those measured with the current calibration."""
    machines = json.loads(BASELINE.read_text())["machines"] if BASELINE.is_file() else {}
    return {tag: entry for tag, entry in machines.items() if entry.get("calibration") == CALIBRATION}


CALIBRATION = "torch-dwconv-v2"  # bump when calibration_workload changes: older baselines stop applying


class _CalibrationNet(torch.nn.Sequential):
    """MobileNet-like stack at 224 (stem, then depthwise 3x3 + pointwise 1x1 at 112/56/28)."""

    def __init__(self) -> None:
        layers: list[torch.nn.Module] = [torch.nn.Conv2d(3, 32, 3, 2, 1), torch.nn.ReLU()]
        for channels, out, stride in [(32, 64, 1), (64, 64, 2), (64, 128, 1), (128, 128, 2), (128, 128, 1)]:
            layers += [torch.nn.Conv2d(channels, channels, 3, stride, 1, groups=channels), torch.nn.ReLU(),
                       torch.nn.Conv2d(channels, out, 1), torch.nn.ReLU()]
        super().__init__(*layers)


def _build_calibration():
    torch.manual_seed(0)
    net = _CalibrationNet().eval()
    image = torch.rand(1, 3, 224, 224)

    def run() -> None:
        with torch.inference_mode():
            net(image)
    return run


def measure(rounds: int, threads: int, only: set[str] | None = None) -> dict[str, float]:
    """Backend name -> fastest IDN latency / fastest calibration latency (batch 1, 224)."""
    torch.set_num_threads(threads)
    models = FaceSwapModels.random(0)
    weights = models.identity_weights(torch.rand(1, 3, 112, 112))
    image = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    names = [n for n in available_backends() if only is None or n in only]
    backends = {name: create_backend(name, models, threads=threads) for name in names}
    for backend in backends.values():
        backend.set_identity(weights)
        backend.run(image)
    calibration_workload = _build_calibration()
    calibration_workload()
    samples: dict[str, list[float]] = {name: [] for name in ["calibration", *backends]}
    for _ in range(rounds):
        for name, fn in [("calibration", calibration_workload),
                         *((n, lambda b=b: b.run(image)) for n, b in backends.items())]:
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    # minimum times: machine noise only ever adds time, so the fastest runs are the steadiest
    calibration = min(samples.pop("calibration"))
    return {name: min(values) / calibration for name, values in samples.items()}


PIPELINE = "video-pipeline"  # the baseline's name for the pipelined swap_video, per frame / calibration
PIPELINE_FRAMES = 60


def _pipeline_clip(folder: Path) -> Path:
    """60 frames, 640x360, a face drifting over a plain background (skimage's astronaut)."""
    import skimage.data

    from mfs_fast.media import VideoWriter
    from mfs_fast.preprocess import rgb_to_bgr

    face = rgb_to_bgr(skimage.data.astronaut())[40:300, 140:360]
    path = folder / "gate.mp4"
    with VideoWriter(path, 640, 360, 30, preset="ultrafast") as writer:
        for i in range(PIPELINE_FRAMES):
            frame = np.full((360, 640, 3), 60, np.uint8)
            frame[50:310, 100 + 3 * i:320 + 3 * i] = face
            writer.write(frame)
    return path


def measure_pipeline(rounds: int, threads: int) -> float:
    """Fastest pipelined ``swap_video`` seconds per frame / fastest calibration, over ``rounds`` passes
    (bundled starter weights, default backend, PyTorch at ``threads`` as in :func:`measure`, x264 ultrafast)."""
    import tempfile

    import skimage.data

    from mfs_fast import Swapper
    from mfs_fast.preprocess import rgb_to_bgr

    torch.set_num_threads(threads)
    calibration_workload = _build_calibration()
    swapper = Swapper(rgb_to_bgr(skimage.data.astronaut()))
    per_frame, calibration = [], []
    with tempfile.TemporaryDirectory(prefix="mfs-gate-") as folder:
        clip = _pipeline_clip(Path(folder))
        for _ in range(rounds):
            for _ in range(10):
                start = time.perf_counter()
                calibration_workload()
                calibration.append(time.perf_counter() - start)
            stats = swapper.swap_video(clip, Path(folder) / "out.mp4", progress=False, preset="ultrafast")
            per_frame.append(stats.seconds / stats.frames_out)
    return min(per_frame) / min(calibration)


def regressions(baseline: dict[str, float], current: dict[str, float], tolerance: float = TOLERANCE) -> list[str]:
    """Backends whose relative FPS fell more than ``tolerance`` below the baseline."""
    failures = []
    for name, relative_latency in current.items():
        if name not in baseline:
            continue
        fps_ratio = baseline[name] / relative_latency  # current FPS / baseline FPS
        if fps_ratio < 1.0 - tolerance:
            failures.append(f"{name}: FPS at {fps_ratio:.0%} of the baseline (limit {1 - tolerance:.0%})")
    return failures


def measure_all(rounds: int, threads: int, only: set[str] | None) -> dict[str, float]:
    """:func:`measure` for the backends, plus the pipelined video path when ``only`` allows it."""
    backends = None if only is None else only - {PIPELINE}
    current = measure(rounds, threads, only=backends) if backends is None or backends else {}
    if only is None or PIPELINE in only:
        current[PIPELINE] = measure_pipeline(3 if rounds < 50 else 5, threads)
    return current


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", action="store_true", help="fewer rounds (CI)")
    parser.add_argument("--update", action="store_true", help="measure 5 times and store the medians as the baseline")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"measure (and with --update, re-record) only "
                        f"these: backend names and/or {PIPELINE}")
    args = parser.parse_args()
    rounds = 25 if args.short else 80
    tag = machine_tag()
    machines = load_baselines()
    if args.update:
        only = set(args.only) if args.only else None
        runs = [measure_all(rounds, args.threads, only) for _ in range(5)]
        baseline = {name: sorted(run[name] for run in runs)[2] for name in runs[0]}
        entry = machines.get(tag, {}) if only else {}
        old_runs = entry.get("runs", [{} for _ in runs])
        machines[tag] = {"threads": args.threads, "calibration": CALIBRATION,
                         "relative_latency": {**entry.get("relative_latency", {}), **baseline},
                         "runs": [{**old, **new} for old, new in zip(old_runs, runs)]}
        BASELINE.write_text(json.dumps({"machines": machines}, indent=1, sort_keys=True) + "\n")
        print(f"baseline for {tag} written to {BASELINE}:", {k: round(v, 2) for k, v in baseline.items()})
        return 0
    if tag not in machines:
        print(f"bench gate not applied: no baseline for machine tag {tag} (baselines with calibration {CALIBRATION}: {', '.join(machines) or 'none'}); "
              f"run `.venv/bin/python bench/gate.py --update` on this kind of machine and commit {BASELINE.name}")
        return 0
    baseline = machines[tag]["relative_latency"]
    print(f"machine tag {tag}")
    # A real regression persists; a noisy run rarely repeats. Measured here: 1 first attempt in 6
    # read 82 % on unchanged code, while a real 1.4x slowdown read 55 % on every attempt.
    for attempt in (1, 2, 3):
        current = measure_all(rounds, args.threads, set(args.only or baseline) & set(baseline))
        failures = regressions(baseline, current)
        print(f"run {attempt}: relative latency (IDN / calibration):", {k: round(v, 2) for k, v in current.items()})
        if not failures:
            print("bench gate passed:", {k: f"{baseline[k] / v:.0%} of baseline FPS" for k, v in current.items()
                                         if k in baseline})
            return 0
        for failure in failures:
            print("REGRESSION", failure)
    return 1


if __name__ == "__main__":
    sys.exit(main())
