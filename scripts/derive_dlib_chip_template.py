"""Derive where *our* 5 landmarks land in dlib's 150x150 face chip (run once; dlib needed).

dlib aligns a face for its ResNet from its own 5-point shape predictor (eye corners and the
base of the nose), by a similarity transform to its mean face with padding 0.25. Our
detector gives different points (eye centres, nose tip, mouth corners). For every face that
both find in the photos given, this maps our landmarks into dlib's chip with dlib's own chip
transform (``get_face_chip_details``) and prints the mean position of each point: the
template that ``mfs_fast.identity.dlib_chip`` fits our landmarks to (similarity, least
squares). It also prints the spread, and how far dlib's own chips and ours differ.

    python scripts/derive_dlib_chip_template.py ../shared/datasets/faces_v1/images --limit 1000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np


def chip_from_image_matrix(details) -> np.ndarray:
    """2x3 affine image -> chip for a dlib ``chip_details`` (checked against get_face_chip)."""
    rect = details.rect
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    scale = (rect.width() - 1) / (details.cols - 1)
    c, s = np.cos(details.angle), np.sin(details.angle)
    linear = scale * np.array([[c, -s], [s, c]])  # chip -> image
    offset = centre - linear @ np.array([(details.cols - 1) / 2, (details.rows - 1) / 2])
    inverse = np.linalg.inv(linear)
    return np.hstack([inverse, (-inverse @ offset)[:, None]])


def main() -> None:
    import dlib
    import face_recognition_models

    from mfs_fast.face.detectors import create_detector
    from mfs_fast.preprocess import bgr_to_rgb

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--limit", type=int, default=400, help="photos to use at most")
    args = parser.parse_args()
    models = Path(face_recognition_models.__file__).parent / "models"
    dlib_detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    ours = create_detector("blazeface")
    files = sorted(p for folder in args.folders for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    points, chip_errors = [], []
    step = max(1, len(files) // max(1, args.limit))
    for path in files[::step][: args.limit]:  # spread over the folder, not its first files
        bgr = cv2.imread(str(path))
        if bgr is None:
            continue
        rgb = bgr_to_rgb(bgr)
        our_faces = ours.detect(bgr)
        for rect in dlib_detector(rgb, 1):
            centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
            match = [f for f in our_faces if np.linalg.norm(f.landmarks.mean(0) - centre) < 0.25 * rect.width()]
            if len(match) != 1:
                continue
            details = dlib.get_face_chip_details(predictor(rgb, rect), 150, 0.25)
            matrix = chip_from_image_matrix(details)
            landmarks = np.hstack([match[0].landmarks, np.ones((5, 1))]) @ matrix.T
            points.append(landmarks)
            ours_chip = cv2.warpAffine(rgb, matrix, (150, 150), flags=cv2.INTER_LINEAR)
            chip_errors.append(np.abs(ours_chip.astype(np.float32) - np.asarray(dlib.get_face_chip(rgb, predictor(rgb, rect), 150, 0.25))).mean())
    points = np.array(points)
    print(f"faces used: {len(points)} (from {min(len(files), args.limit)} photos)")
    print(f"dlib chip vs our warp with dlib's transform: mean |diff| {np.mean(chip_errors):.2f} levels")
    print("template (x, y) in the 150x150 chip, ± std:")
    for name, mean, std in zip(("eye_1", "eye_2", "nose", "mouth_1", "mouth_2"), points.mean(0), points.std(0)):
        print(f"  {name:8s} ({mean[0]:7.3f}, {mean[1]:7.3f})  ± ({std[0]:.2f}, {std[1]:.2f})")


if __name__ == "__main__":
    main()
