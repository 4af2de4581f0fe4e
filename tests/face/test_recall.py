"""Recall against committed labels (tests/data/face_labels.json, made by bench/label_faces.py):
every face of the group photo, and the small faces of the shared 1080p crowd clip that the
whole-frame pass misses."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_ASSETS

from mfs_fast.face.detectors import BlazeFaceDetector

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from recall import load_labels, labelled_images, matched  # noqa: E402

CROWD_FRAMES = [f"crowd_1080p_105f.mp4#{i}" for i in (0, 5, 10, 15, 20)]
pytestmark = pytest.mark.skipif(
    not (SHARED_ASSETS / "videos" / "crowd_1080p_105f.mp4").is_file(),
    reason=f"the shared crowd clip and photos are not in {SHARED_ASSETS} (full checkout only)")


def _recall(detector: BlazeFaceDetector, names: list[str]) -> tuple[int, int]:
    labels = load_labels()
    found = sum(matched([f.landmarks for f in detector.detect(image)], labels[name])
                for name, image in labelled_images(names))
    return found, sum(len(labels[name]) for name in names)


def test_matching_counts_each_detection_once():
    label = np.array([[0, 0], [20, 0], [10, 10], [3, 20], [17, 20]], np.float32)
    assert matched([label + 4], [label]) == 1  # centre 5.7 px off, half the eye distance is 10
    assert matched([label + 8], [label]) == 0
    assert matched([label], [label, label + 1]) == 1  # one detection cannot serve two labels
    assert matched([], [label]) == 0


def test_all_six_faces_of_the_group_photo():
    assert _recall(BlazeFaceDetector(), ["group_6faces.jpg"]) == (6, 6)


def test_small_crowd_faces_found_by_the_tiles():
    """Measured on these 5 frames: 27/30 with tiles (the misses are 9-20 px between the eyes,
    below the 24 px asked for), 8/30 with the whole frame alone. Such tiny faces come and go
    with a level of decoding: decoded by the C++ core (exact BT.601) instead of ffmpeg's own
    conversion, 25/30 without the finer tiles that small faces now bring, 27/30 with them."""
    found, labelled = _recall(BlazeFaceDetector(), CROWD_FRAMES)
    assert found >= 0.85 * labelled, (found, labelled)
    whole_found, _ = _recall(BlazeFaceDetector(min_eye_distance=None), CROWD_FRAMES)
    assert whole_found <= 0.5 * labelled, (whole_found, labelled)


def test_tracked_crowd_clip_finds_nine_in_ten_labelled_faces():
    """The issue's measure: the whole 1080p crowd clip through the tracker (detect every 5
    frames), faces on the labelled frames. Measured 93/103 (90 %) with the finer tiles where
    faces are small and lost faces looked for around where they were (94 with a whole search on
    each loss, 88 without the finer tiles); every labelled face >= 24 px between the eyes but 2.
    The bound leaves 2 faces for another CPU's LiteRT kernels (borderline 9-20 px faces flip
    with the last bits of a frame) and still fails without the finer tiles."""
    from mfs_fast.face import FaceTracker
    from mfs_fast.media import read_frames

    labels = load_labels()
    tracker = FaceTracker(BlazeFaceDetector(), every=5)
    found = labelled = 0
    for index, frame in enumerate(read_frames(SHARED_ASSETS / "videos" / "crowd_1080p_105f.mp4")):
        faces = tracker.update(frame)
        wanted = labels.get(f"crowd_1080p_105f.mp4#{index}")
        if wanted is not None:
            found += matched([f.landmarks for f in faces], wanted)
            labelled += len(wanted)
    assert labelled == 103 and found >= 91, (found, labelled)
