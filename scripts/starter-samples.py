"""The README's picture of the default weights: held-out sources x held-out targets.

    .venv/bin/python scripts/starter-samples.py [--weights DIR] [-o docs/starter_samples.png]

Rows: 3 of the 5 people held out of training (configs/starter.toml); columns: 4 held-out targets
(LFW photos and a frame of a held-out clip). Top row: the targets; left column: the sources.
Each tile is the face region of the swapped frame (the target's largest face, 1.6 face boxes wide),
so the reader sees the face at the size it was swapped, not a thumbnail of a whole photo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "faces_v1"
SOURCES = ["duenf33_frdl__dataset_mel_gibson_00000000.jpg", "bhachauk_5celeb__test_mindy_kaling_mk.jpg",
           "bhachauk_5celeb__test_elton_john_ej.jpg"]
TARGETS = ["lfw__images_deepfunneled_JK_Rowling_JK_Rowling_0003.jpg",
           "lfw__images_deepfunneled_Richard_Dreyfuss_Richard_Dreyfuss_0001.jpg",
           "lfw__images_deepfunneled_Pele_Pele_0001.jpg",
           "videos/liveportrait__assets_examples_driving_d19.mp4"]
TILE = 200


def _target_frame(name: str) -> np.ndarray:
    path = DATA / (name if "/" in name else f"images/{name}")
    if path.suffix == ".mp4":
        from mfs_fast.media import read_frames

        reader = read_frames(path)
        try:
            for index, frame in enumerate(reader):
                if index == 30:
                    return frame
        finally:
            reader.close()
        raise SystemExit(f"{path} has fewer than 31 frames")
    return cv2.imread(str(path))


def _face_tile(image: np.ndarray, detector) -> np.ndarray:
    faces = detector.detect(image)
    if not faces:
        return cv2.resize(image, (TILE, TILE), interpolation=cv2.INTER_AREA)
    x0, y0, x1, y1 = max(faces, key=lambda f: f.area).box
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, 1.6 * max(x1 - x0, y1 - y0)
    matrix = np.float32([[TILE / side, 0, TILE / 2 - cx * TILE / side], [0, TILE / side, TILE / 2 - cy * TILE / side]])
    return cv2.warpAffine(image, matrix, (TILE, TILE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="weights folder (default: the bundled starter weights)")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "starter_samples.png"))
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"error: faces_v1 not found at {DATA}", file=sys.stderr)
        return 2
    from mfs_fast import Swapper
    from mfs_fast.face import create_detector
    from mfs_fast.media import write_image

    detector = create_detector("blazeface")
    targets = [_target_frame(t) for t in TARGETS]
    rows = [np.hstack([np.full((TILE, TILE, 3), 255, np.uint8)] + [_face_tile(t, detector) for t in targets])]
    for name in SOURCES:
        source = cv2.imread(str(DATA / "images" / name))
        swapper = Swapper(source, weights=args.weights, faces="largest")
        rows.append(np.hstack([_face_tile(source, detector)] + [_face_tile(swapper.swap(t), detector) for t in targets]))
    write_image(args.output, np.vstack(rows))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
