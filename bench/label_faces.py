"""Face labels for recall tests, from a slow exhaustive pass; written once, checked by eye, committed.

    PYTHONPATH=$PWD .venv/bin/python bench/label_faces.py [--every 5] [--show DIR]

The pass: full-range BlazeFace (score >= 0.3) on the whole image and on tiles of 960, 720,
640, 540, 480, 400, 320 and 240 px overlapping by half (a face 17 px between the eyes is 14
to 69 px in the model's input across those), candidates clustered by box overlap, each
cluster's best box given to the face mesh in full resolution, kept where the mesh sees a face
(presence >= 0.5), meshes on one face merged (distinct_faces). Labelled: every 5th frame of the shared crowd
clip and group_6faces.jpg. --show writes each labelled image with its numbered boxes as PNG,
for the visual check. Faces no scale finds (profiles, faces turned down or away) are not
labelled; bench/RESULTS.md says how many a person sees besides.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from mfs_fast.atomic import atomic_write
from mfs_fast.face.blazeface import BlazeFace
from mfs_fast.face.face_mesh import FaceMesh, five_points, roi_from_detection
from mfs_fast.face.tiles import crop, tile_boxes
from mfs_fast.face.tracking import box_iou
from mfs_fast.media import read_bgr, read_frames

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "assets"
CROWD_CLIP = SHARED / "videos" / "crowd_1080p_105f.mp4"
GROUP_PHOTO = SHARED / "images" / "group_6faces.jpg"
LABELS = ROOT / "tests" / "data" / "face_labels.json"
TILES = (960, 720, 640, 540, 480, 400, 320, 240)


def _candidates(detector: BlazeFace, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(box, keypoints, score) of every detection at every scale, in image pixels."""
    h, w = image.shape[:2]
    regions = [(0, 0, w, h)] + [box for tile in TILES if tile < max(h, w) for box in tile_boxes(w, h, tile, 0.5)]
    found = []
    for region in regions:
        x, y = region[:2]
        for d in detector.detect(np.ascontiguousarray(crop(image, region))):
            found.append((d.box + np.float32([x, y, x, y]), d.keypoints + np.float32([x, y]), d.score))
    return found


def label_image(detector: BlazeFace, mesh: FaceMesh, image: np.ndarray) -> list[list[list[float]]]:
    """The faces the exhaustive pass finds: 5 landmarks each, rounded to 0.1 px."""
    clusters: list[tuple[np.ndarray, np.ndarray, float]] = []
    for box, keypoints, score in sorted(_candidates(detector, image), key=lambda c: -c[2]):
        if not any(box_iou(box, kept[0]) > 0.3 for kept in clusters):
            clusters.append((box, keypoints, score))
    results = mesh.run(image, [roi_from_detection(box, keypoints) for box, keypoints, _ in clusters])
    faces = distinct_faces([five_points(r.points) for r in results if r.presence >= 0.5])
    return [np.round(f.astype(np.float64), 1).tolist() for f in faces]


def distinct_faces(faces: list[np.ndarray]) -> list[np.ndarray]:
    """Faces (5 landmarks each, best first) without later ones whose landmark centre is within
    one eye distance of a kept face's: two meshes fitted to one face (two people's faces are
    2+ eye distances apart)."""
    kept: list[np.ndarray] = []
    for face in faces:
        reach = float(np.linalg.norm(face[1] - face[0]))
        if all(np.linalg.norm(face.mean(0) - k.mean(0)) >= max(reach, float(np.linalg.norm(k[1] - k[0])))
               for k in kept):
            kept.append(face)
    return kept


def _show(path: Path, image: np.ndarray, faces: list[list[list[float]]]) -> None:
    image = image.copy()
    for k, face in enumerate(faces):
        points = np.asarray(face)
        size = max(4, int(1.2 * np.linalg.norm(points[1] - points[0])))
        cx, cy = points.mean(0).astype(int)
        cv2.rectangle(image, (cx - size, cy - size), (cx + size, cy + size), (0, 255, 0), 3)
        cv2.putText(image, str(k), (cx - size, cy - size - 6), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 255, 255), 3)
    cv2.imwrite(str(path), image)


def to_json(labels: dict[str, list]) -> str:
    """The labels file: what made it, then one image a line (image name -> faces -> 5 [x, y])."""
    lines = [f" {json.dumps(name)}: {json.dumps(faces, separators=(',', ':'))}" for name, faces in labels.items()]
    return ('{"how": "bench/label_faces.py: exhaustive multi-scale BlazeFace + full-resolution face mesh; '
            'checked by eye; faces -> 5 landmarks [x, y] in ArcFace order",\n"images": {\n'
            + ",\n".join(lines) + "\n}}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=5, help="label every Nth frame of the crowd clip")
    parser.add_argument("--show", type=Path, help="write each labelled image with its boxes here (PNG)")
    args = parser.parse_args()
    if not CROWD_CLIP.is_file() or not GROUP_PHOTO.is_file():
        raise SystemExit(f"the shared assets are missing ({CROWD_CLIP}, {GROUP_PHOTO}): run this in the full checkout")
    detector, mesh = BlazeFace(min_score=0.3), FaceMesh()
    images = {GROUP_PHOTO.name: read_bgr(GROUP_PHOTO)}
    images.update({f"{CROWD_CLIP.name}#{i}": frame for i, frame in enumerate(read_frames(CROWD_CLIP))
                   if i % args.every == 0})
    labels = {}
    for name, image in images.items():
        labels[name] = label_image(detector, mesh, image)
        print(f"{name}: {len(labels[name])} faces", flush=True)
        if args.show:
            args.show.mkdir(parents=True, exist_ok=True)
            _show(args.show / (name.replace("#", "_") + ".png"), image, labels[name])
    atomic_write(LABELS, to_json(labels))
    print(f"wrote {LABELS}")


if __name__ == "__main__":
    main()
