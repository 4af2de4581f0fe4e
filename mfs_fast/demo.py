"""``mfs-fast demo``: a two-person swap on a fresh machine, with nothing but the installed package.

Source: Grace Hopper's 1984 official US Navy portrait (public domain; shipped in
``demo_data/``, a 35 KB crop of the copy matplotlib bundles). Target: Eileen Collins' NASA
portrait (public domain; ``skimage.data.astronaut()``). Attribution: ``NOTICE``. Weights: the
official ones when the model store has them, else the bundled starter weights, and the demo says
which. Writes source, target, result and ``side_by_side.png`` (labelled panels above face
close-ups) into the output folder, atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SOURCE_PHOTO = Path(__file__).resolve().parent / "demo_data" / "grace_hopper.jpg"
SOURCE_LABEL = "Grace Hopper (US Navy, public domain)"
TARGET_LABEL = "Eileen Collins (NASA, public domain)"
PANEL_HEIGHT = 360
CLOSE_UP = 240
BAR = 34


@dataclass(frozen=True)
class DemoWeights:
    """Which weights the demo uses and the sentence that tells the user."""

    spec: str | Path
    label: str
    note: str


def choose_weights(weights: str | Path | None) -> DemoWeights:
    """The given weights; else ``official`` if installed; else the bundled starter weights."""
    from .store import installed

    if weights is not None:
        return DemoWeights(weights, f"{weights} weights", f"weights: {weights}")
    if installed("official") is not None:
        return DemoWeights("official", "official weights", "weights: official (from the model store)")
    return DemoWeights("starter", "starter weights (weak)",
                       "weights: the bundled starter weights (a weak, blurry swap; for real quality run "
                       "`mfs-fast weights get official`, then this demo again)")


def astronaut_bgr() -> np.ndarray:
    import skimage.data

    from .preprocess import rgb_to_bgr

    return rgb_to_bgr(skimage.data.astronaut())


def run_demo(output: str | Path, target: str | Path | None = None, weights: str | Path | None = None,
             source: str | Path | None = None) -> list[Path]:
    """Swap ``source`` (default: Grace Hopper) onto ``target`` (default: Eileen Collins); returns
    the files written."""
    from .media import read_bgr, write_image
    from .pipeline import Swapper
    from .watermark.metadata import with_note

    chosen = choose_weights(weights)
    source_image = read_bgr(source if source is not None else SOURCE_PHOTO)
    target_image = read_bgr(target) if target is not None else astronaut_bgr()
    swapper = Swapper(source_image, chosen.spec)
    result = swapper.swap(target_image)
    source_faces = swapper.detector.detect(source_image)
    panels = [
        (f"source: {Path(source).name if source is not None else SOURCE_LABEL}", source_image, source_faces),
        (f"target: {Path(target).name if target is not None else TARGET_LABEL}", target_image, swapper.last_faces),
        (f"result: {chosen.label}", result, swapper.last_faces),
    ]
    output = Path(output)
    files = {"source.png": source_image, "target.png": target_image, "swapped.png": result,
             "side_by_side.png": side_by_side(panels)}
    synthetic = with_note(None)  # the provenance note for the files that show the swap
    written = [write_image(output / name, image, metadata=synthetic if name in ("swapped.png", "side_by_side.png")
                           else None) for name, image in files.items()]
    print(chosen.note)
    print(f"swapped {len(swapper.last_faces)} face(s) (backend {swapper.backend.name}); "
          f"wrote {', '.join(str(p) for p in written)}")
    return written


def side_by_side(panels: list[tuple[str, np.ndarray, list]]) -> np.ndarray:
    """Labelled full pictures in a row, and below each a close-up of its largest face."""
    tops = [_labelled(_fit_height(image, PANEL_HEIGHT), label) for label, image, _ in panels]
    width = sum(t.shape[1] for t in tops)
    lows = [_close_up(image, faces, t.shape[1]) for (_, image, faces), t in zip(panels, tops)]
    return np.vstack([np.hstack(tops), np.hstack(lows)])[:, :width]


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _labelled(image: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((BAR, image.shape[1], 3), 255, np.uint8)
    scale = 0.55
    while scale > 0.3 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > image.shape[1] - 12:
        scale -= 0.05
    cv2.putText(bar, text, (6, BAR - 11), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([bar, image])


def _close_up(image: np.ndarray, faces: list, width: int) -> np.ndarray:
    """The largest face, 1.8x its box, as a square of side ``CLOSE_UP`` centred in ``width``."""
    cell = np.full((CLOSE_UP, width, 3), 255, np.uint8)
    if not faces:
        return cell
    x1, y1, x2, y2 = max(faces, key=lambda f: f.area).box
    side = 1.8 * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    scale = CLOSE_UP / side
    affine = np.float32([[scale, 0, CLOSE_UP / 2 - scale * cx], [0, scale, CLOSE_UP / 2 - scale * cy]])
    face = cv2.warpAffine(image, affine, (CLOSE_UP, CLOSE_UP), flags=cv2.INTER_CUBIC, borderValue=(255, 255, 255))
    left = max(0, (width - CLOSE_UP) // 2)
    cell[:, left:left + min(CLOSE_UP, width)] = face[:, :min(CLOSE_UP, width)]
    return cell
