"""Landmark jitter on a still face seen by a noisy camera, before and after tracking/smoothing.

    .venv/bin/python bench/jitter.py [--frames 60] [--noise 4] [--detectors blazeface-whole-frame blazeface]

A real photo plus fresh Gaussian sensor noise each frame: the face never moves, so every
landmark movement is jitter. Prints RMS spread around the mean position and RMS
frame-to-frame step, in pixels.
"""

import argparse

import numpy as np
import skimage.data

from mfs_fast.face import FaceTracker, create_detector, landmark_jitter
from mfs_fast.preprocess import rgb_to_bgr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--noise", type=float, default=4.0, help="sensor noise sigma, 8-bit levels")
    parser.add_argument("--detectors", nargs="+", default=["blazeface-whole-frame", "blazeface"])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    base = rgb_to_bgr(skimage.data.astronaut()).astype(np.float32)
    frames = [np.clip(base + rng.normal(0, args.noise, base.shape), 0, 255).astype(np.uint8) for _ in range(args.frames)]
    settings = {
        "detector every frame, raw": dict(every=1, smooth=False),
        "detector every 5 frames, raw": dict(every=5, smooth=False),
        "detector every frame, One-Euro smoothing": dict(every=1, smooth=True),
        "detector every 5, One-Euro (default)": dict(every=5, smooth=True),
    }
    print(f"still face, {args.frames} frames, noise sigma {args.noise}; jitter in px (first 5 frames skipped)")
    for detector_name in args.detectors:
        detector = create_detector(detector_name)
        print(detector_name)
        for name, options in settings.items():
            tracker = FaceTracker(detector, **options)
            points = [tracker.update(frame)[0].landmarks for frame in frames]
            j = landmark_jitter(points[5:])
            print(f"  {name:44s} std {j['std']:.3f}   step {j['step']:.3f}")


if __name__ == "__main__":
    main()
