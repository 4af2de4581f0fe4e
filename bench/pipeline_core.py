"""One face in a 1280x720 frame: the Python pipeline (fused backend) vs the C++ pipeline core.

    .venv/bin/python bench/pipeline_core.py [--repeat 60] [--threads 1 2]

Both run everything after detection for one frame (align, IDN, paste-back into a new frame)
through ``Swapper``: the Python path (cv2 warp, the fused IDN backend, NumPy/OpenCV paste) and
the core (one native call). Runs alternate, medians in milliseconds; random weights (speed does
not depend on their values).
"""

import argparse
import statistics
import time

import cv2
import numpy as np
import skimage.data

from mfs_fast import Swapper
from mfs_fast.face.detectors import create_detector
from mfs_fast.backends.fused import FusedIDN
from mfs_fast.models import FaceSwapModels
from mfs_fast.preprocess import rgb_to_bgr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    frame = np.full((720, 1280, 3), 40, np.uint8)
    frame[104:616, 384:896] = rgb_to_bgr(skimage.data.astronaut())
    models = FaceSwapModels.random(seed=0)
    detector = create_detector("blazeface")
    (face,) = detector.detect(frame)
    print(f"1280x720 frame, one face, {args.repeat} runs each (alternating); median ms")
    print(f"{'threads':>7} | {'python path':>11} | {'core':>7} | speed-up | core stages (copy / warp / idn / mask / detail / paste)")
    for threads in args.threads:
        cv2.setNumThreads(threads)
        swapper = Swapper(frame, models, backend=FusedIDN(models, threads=threads), detector=detector)
        core = swapper.core
        times = {"python": [], "core": []}
        stages = {name: [] for name in ("copy", "warp", "idn", "mask", "detail", "paste")}
        for i in range(args.repeat + 3):
            for mode in ("python", "core"):
                swapper.core = core if mode == "core" else None
                start = time.perf_counter()
                swapper._swap_faces([frame], [[face]], [None])
                elapsed = time.perf_counter() - start
                if i >= 3:  # warm-up
                    times[mode].append(elapsed)
                    if mode == "core":
                        for name, seconds in core.seconds().items():
                            stages[name].append(seconds)
        py, co = (1e3 * statistics.median(times[m]) for m in ("python", "core"))
        detail = " / ".join(f"{1e3 * statistics.median(v):.2f}" for v in stages.values())
        print(f"{threads:>7} | {py:>11.2f} | {co:>7.2f} | {py / co:>7.2f}x | {detail}")


if __name__ == "__main__":
    main()
