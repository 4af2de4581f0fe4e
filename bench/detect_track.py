"""Detect + track cost per frame, recall and wobble: two detectors side by side on the same frames.

    PYTHONPATH=$PWD .venv/bin/python bench/detect_track.py [--before blazeface-whole-frame]
        [--after blazeface] [--every 5]

Clips: a 512x512 talking head scaled into 1280x720 (made with ffmpeg into a temporary folder)
and the shared 1080p crowd clip. Each frame goes through both FaceTrackers one after the other,
so machine load hits both alike. Reported per clip and detector: mean and 95th-percentile ms
per frame of FaceTracker.update, faces per frame, recall against tests/data/face_labels.json
on the labelled crowd frames, and wobble on the talking head: RMS second difference of the
5 landmarks over frames (px; high-frequency shake that smoothing should remove, while real
head motion, being smooth, adds little).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from mfs_fast.face import FaceTracker, create_detector
from mfs_fast.media import ffmpeg_exe, read_frames

from recall import SHARED, load_labels, matched

TALKING_CLIP = SHARED / "videos" / "talking_d10.mp4"
CROWD_CLIP = SHARED / "videos" / "crowd_1080p_105f.mp4"


def talking_720p(folder: Path) -> Path:
    """The 512x512 talking clip scaled to 720x720 and centred in a 1280x720 frame."""
    out = folder / "talking_720p.mp4"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(TALKING_CLIP), "-vf",
                    "scale=720:720,pad=1280:720:280:0", "-c:v", "libx264", "-crf", "18", "-an", str(out)], check=True)
    return out


def wobble(track: list[np.ndarray]) -> float:
    """RMS second difference of landmarks over consecutive frames, px."""
    points = np.stack(track).astype(np.float64)
    if len(points) < 3:
        return float("nan")
    return float(np.sqrt((np.diff(points, n=2, axis=0) ** 2).sum(axis=2).mean()))


def side_by_side(clip: Path, names: list[str], every: int, labels: dict[str, list[np.ndarray]]) -> dict[str, dict]:
    """Every frame through each detector's tracker in turn; per detector: times, counts, hits, landmarks."""
    trackers = {name: FaceTracker(create_detector(name), every=every) for name in names}
    results = {name: {"ms": [], "faces": [], "hits": 0, "labelled": 0, "track": []} for name in names}
    for index, frame in enumerate(read_frames(clip)):
        wanted = labels.get(f"{clip.name}#{index}")
        for name, tracker in trackers.items():
            start = time.perf_counter()
            faces = tracker.update(frame)
            result = results[name]
            result["ms"].append(1e3 * (time.perf_counter() - start))
            result["faces"].append(len(faces))
            if len(faces) == 1:
                result["track"].append(faces[0].landmarks)
            if wanted is not None:
                result["hits"] += matched([f.landmarks for f in faces], wanted)
                result["labelled"] += len(wanted)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="blazeface-whole-frame")
    parser.add_argument("--after", default="blazeface")
    parser.add_argument("--every", type=int, default=5, help="FaceTracker: detect every N frames")
    args = parser.parse_args()
    if not CROWD_CLIP.is_file() or not TALKING_CLIP.is_file():
        raise SystemExit(f"the shared clips are missing ({CROWD_CLIP}, {TALKING_CLIP}): run this in the full checkout")
    labels = load_labels()
    names = [args.before, args.after]
    print("| clip | detector | ms/frame mean | p95 | faces/frame | recall (labelled frames) | wobble px |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for clip in (talking_720p(Path(folder)), CROWD_CLIP):
            for name, r in side_by_side(clip, names, args.every, labels).items():
                ms = np.asarray(r["ms"][1:])  # the first frame loads lazily-made interpreters
                recall = f"{r['hits']}/{r['labelled']} = {100 * r['hits'] / r['labelled']:.0f} %" if r["labelled"] else "-"
                shake = f"{wobble(r['track']):.2f}" if len(r["track"]) == len(r["faces"]) else "-"
                print(f"| {clip.name} | {name} | {ms.mean():.1f} | {np.percentile(ms, 95):.1f} | "
                      f"{np.mean(r['faces']):.2f} | {recall} | {shake} |", flush=True)


if __name__ == "__main__":
    main()
