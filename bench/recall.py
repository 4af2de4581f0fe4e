"""Detector recall: labelled faces found on the shared crowd clip and group photo, and faces
found / expected on every shared test photo, with time per image.

    PYTHONPATH=$PWD .venv/bin/python bench/recall.py [--detector blazeface] [--photos]

The labels (tests/data/face_labels.json) come from bench/label_faces.py's exhaustive pass. A
labelled face counts as found when a detected face's landmark centre lies within half the
label's eye distance of the label's (each detection matches one label at most).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from mfs_fast.face import create_detector
from mfs_fast.media import read_bgr, read_frames

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "assets"
ASSETS = SHARED / "images"
LABELS = ROOT / "tests" / "data" / "face_labels.json"
EXPECTED = {"group_6faces.jpg": 6, "no_faces_dogs.jpg": 0, "group_dlib_2008_002470.jpg": 7,
            "group_dlib_bald_guys.jpg": 25}  # every other photo there shows one face


def load_labels() -> dict[str, list[np.ndarray]]:
    """Image name ("photo.jpg" or "clip.mp4#frame") -> labelled faces' 5 landmarks, (5, 2) each."""
    images = json.loads(LABELS.read_text())["images"]
    return {name: [np.asarray(face, np.float32) for face in faces] for name, faces in images.items()}


def labelled_images(names: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(name, BGR image) for label names, from the shared assets, clip frames in clip order."""
    frames_wanted: dict[str, set[int]] = {}
    for name in names:
        if "#" in name:
            clip, index = name.split("#")
            frames_wanted.setdefault(clip, set()).add(int(index))
        else:
            yield name, read_bgr(ASSETS / name)
    for clip, wanted in frames_wanted.items():
        for index, frame in enumerate(read_frames(SHARED / "videos" / clip)):
            if index in wanted:
                yield f"{clip}#{index}", frame
            if index >= max(wanted):
                break


def matched(found: list[np.ndarray], labelled: list[np.ndarray]) -> int:
    """How many labelled faces (5 landmarks each) some found face matches, one to one."""
    free = [np.asarray(f, np.float64).mean(axis=0) for f in found]
    hits = 0
    for label in labelled:
        centre, eye_distance = label.mean(axis=0), float(np.linalg.norm(label[1] - label[0]))
        distances = [float(np.linalg.norm(c - centre)) for c in free]
        if distances and min(distances) < 0.5 * eye_distance:
            free.pop(int(np.argmin(distances)))
            hits += 1
    return hits


def _labelled_report(detector) -> None:
    labels = load_labels()
    totals = {}
    for name, image in labelled_images(sorted(labels)):
        start = time.perf_counter()
        faces = detector.detect(image)
        ms = 1e3 * (time.perf_counter() - start)
        hits = matched([f.landmarks for f in faces], labels[name])
        group = name.split("#")[0]
        found, wanted = totals.get(group, (0, 0))
        totals[group] = (found + hits, wanted + len(labels[name]))
        print(f"{name:30s} labelled {len(labels[name]):2d} found {hits:2d} (detections {len(faces):2d}) {ms:7.1f} ms")
    for group, (found, wanted) in totals.items():
        print(f"{group}: recall {found}/{wanted} = {100 * found / wanted:.0f} %")


def _photo_report(detector) -> None:
    for path in sorted(ASSETS.glob("*.jpg")):
        image = cv2.imread(str(path))
        detector.detect(image)  # warm-up
        start = time.perf_counter()
        faces = detector.detect(image)
        ms = 1e3 * (time.perf_counter() - start)
        expected = EXPECTED.get(path.name, 1)
        print(f"{path.name:30s} {image.shape[1]:5d}x{image.shape[0]:<5d} found {len(faces):3d} / {expected:<3d} {ms:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", default="blazeface")
    parser.add_argument("--photos", action="store_true", help="faces found / expected on every shared photo")
    args = parser.parse_args()
    if not ASSETS.is_dir():
        raise SystemExit(f"shared images not found at {ASSETS}")
    detector = create_detector(args.detector)
    (_photo_report if args.photos else _labelled_report)(detector)


if __name__ == "__main__":
    main()
