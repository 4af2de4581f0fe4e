"""``mfs-fast demo``: swap a face on a fresh machine with nothing but the installed packages.

Source: skimage's astronaut photo (Eileen Collins, public domain, shipped by scikit-image).
Target: a photo given with ``--target``, else a generated one (the astronaut mirrored, turned
by 8 degrees and re-lit), so the demo always runs. Writes source, target, result and a side
by side strip into the output folder (atomically), with the bundled starter weights unless
``--weights`` names others.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def astronaut_bgr() -> np.ndarray:
    import skimage.data

    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def generated_target(source: np.ndarray) -> np.ndarray:
    """A different-looking target from the source photo: mirrored, rotated, warmer and darker."""
    h, w = source.shape[:2]
    turned = cv2.warpAffine(cv2.flip(source, 1), cv2.getRotationMatrix2D((w / 2, h / 2), 8, 1.0), (w, h),
                            borderMode=cv2.BORDER_REFLECT)
    gains = np.array([0.8, 0.9, 1.05], np.float32)  # BGR
    return np.clip(turned.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def run_demo(output: str | Path, target: str | Path | None = None, weights: str | Path | None = None) -> list[Path]:
    """Swap the astronaut onto ``target`` (or a generated target); returns the files written."""
    from .image_io import read_bgr, write_image
    from .pipeline import Swapper

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    source = astronaut_bgr()
    target_image = read_bgr(target) if target is not None else generated_target(source)
    swapper = Swapper(source, weights)
    result = swapper.swap(target_image)
    height = 360

    def fit(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, (round(image.shape[1] * height / image.shape[0]), height), interpolation=cv2.INTER_AREA)

    strip = np.hstack([fit(source), fit(target_image), fit(result)])
    files = {"source.png": source, "target.png": target_image, "swapped.png": result, "side_by_side.png": strip}
    written = []
    for name, image in files.items():
        write_image(output / name, image)
        written.append(output / name)
    print(f"swapped {len(swapper.last_faces)} face(s) with the {'given' if weights else 'bundled starter'} weights "
          f"(backend {swapper.backend.name}); wrote {', '.join(str(p) for p in written)}")
    return written
