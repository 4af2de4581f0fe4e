"""Landmark smoothing and tracking: steadier on a still face, little lag on a moving one; faces
entering, leaving, crossing and changing order keep their own track (synthetic detections)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mfs_fast.errors import MfsError
from mfs_fast.face import Face, FaceTracker, OneEuroFilter
from mfs_fast.face.tracking import landmark_jitter, match_boxes, min_cost_assignment
from mfs_fast.face.detectors import create_detector

from conftest import _astronaut_bgr


def test_one_euro_smooths_noise_and_follows_motion():
    rng = np.random.default_rng()
    still = [np.array([100.0, 50.0]) + rng.normal(0, 1.0, 2) for _ in range(400)]
    f = OneEuroFilter(rate=30)
    smoothed = [f(x) for x in still]
    assert landmark_jitter(smoothed[10:])["std"] < 0.5 * landmark_jitter(still[10:])["std"]
    # a face moving at 150 px/s: after settling, the filter lags by a few pixels at most
    f = OneEuroFilter(rate=30)
    moving = [np.array([5.0 * t, 0.0]) for t in range(60)]
    out = [f(x) for x in moving]
    assert abs(out[-1][0] - moving[-1][0]) < 6.0


def noisy_static_frames(n: int, sigma: float = 4.0) -> list[np.ndarray]:
    """A still face seen by a noisy camera: the same photo plus fresh sensor noise each frame."""
    rng = np.random.default_rng()
    base = _astronaut_bgr().astype(np.float32)
    return [np.clip(base + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8) for _ in range(n)]


def test_tracker_smoothing_reduces_jitter_on_a_static_face():
    frames = noisy_static_frames(40)
    detector = create_detector("blazeface")
    raw = [FaceTracker(detector, every=1, smooth=False).update(f)[0].landmarks for f in frames]
    tracker = FaceTracker(detector, every=5, smooth=True)
    steady = [tracker.update(f)[0].landmarks for f in frames]
    before, after = landmark_jitter(raw[5:]), landmark_jitter(steady[5:])
    assert after["step"] < 0.6 * before["step"], (before, after)
    # smoothing does not drift away from where the face is
    assert np.abs(np.mean(steady[5:], axis=0) - np.mean(raw[5:], axis=0)).max() < 2.0


# --- association: synthetic detections ---------------------------------------------------

# 5 points of an upright face of side 1 centred on 0 (eyes, nose, mouth corners)
_UNIT_POINTS = np.array([[-0.2, -0.15], [0.2, -0.15], [0.0, 0.05], [-0.15, 0.22], [0.15, 0.22]])


def face_at(cx: float, cy: float, size: float = 60.0) -> Face:
    half = size / 2
    box = np.array([cx - half, cy - half, cx + half, cy + half], np.float32)
    return Face(box, 0.9, (np.array([cx, cy]) + size * _UNIT_POINTS).astype(np.float32))


class ScriptedDetector:
    """Returns the scripted faces of the frame whose index is written in the frame's pixels."""

    name = "scripted"

    def __init__(self, script: list[list[Face]]):
        self.script, self.detect_calls = script, 0

    def detect(self, image: np.ndarray) -> list[Face]:
        self.detect_calls += 1
        return list(self.script[int(image[0, 0, 0])])


class ScriptedTrackingDetector(ScriptedDetector):
    """With ``track``: follows the previous faces that are still in the script (a face that
    entered since cannot be followed, one that left is dropped), in the previous order."""

    def track(self, image: np.ndarray, previous: list[Face]) -> list[Face]:
        now = self.script[int(image[0, 0, 0])]
        near = [[f for f in now if np.abs(f.box - p.box).max() < 20] for p in previous]
        return [found[0] for found in near if found]


def run(tracker: FaceTracker, frames: int) -> list[dict[int, Face]]:
    """Per frame: track id -> face."""
    out = []
    for t in range(frames):
        faces = tracker.update(np.full((4, 4, 3), t, np.uint8))
        out.append(dict(zip(tracker.ids, faces)))
    return out


def centre(face: Face) -> np.ndarray:
    return (face.box[:2] + face.box[2:]) / 2


def test_assignment_is_optimal_on_random_matrices():
    rng = np.random.default_rng(0)
    for rows, cols in [(1, 1), (3, 3), (2, 5), (5, 2), (4, 4), (6, 6), (0, 3)]:
        cost = rng.uniform(0, 10, (rows, cols)).round(1)  # rounding makes ties
        pairs = min_cost_assignment(cost)
        assert len(pairs) == min(rows, cols)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        small = cost if rows <= cols else cost.T
        best = min((sum(small[i, j] for i, j in enumerate(cols_)) for cols_ in
                    itertools.permutations(range(small.shape[1]), small.shape[0])), default=0.0)
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(best)


def test_match_boxes_gates_far_boxes_and_uses_each_box_once():
    a, b, far = face_at(100, 100).box, face_at(200, 100).box, face_at(400, 400).box
    assert match_boxes([a, b], [b + 3, a - 3]) == [(0, 1), (1, 0)]
    assert match_boxes([a], [far]) == []
    assert match_boxes([a, a + 1], [a]) in ([(0, 0)], [(1, 0)])
    assert match_boxes([], [a]) == [] and match_boxes([a], []) == []


def test_faces_swapping_order_in_the_detector_list_keep_their_tracks():
    """The detector lists the two faces in alternating order (the list-equality crash)."""
    script = []
    for t in range(12):
        left, right = face_at(80 + t, 100), face_at(240 - t, 100)
        script.append([left, right] if t % 2 == 0 else [right, left])
    frames = run(FaceTracker(ScriptedDetector(script), every=1, smooth=True), len(script))
    assert all(set(f) == {0, 1} for f in frames)
    for t, faces in enumerate(frames):
        np.testing.assert_allclose(centre(faces[0]), [80 + t, 100])
        np.testing.assert_allclose(centre(faces[1]), [240 - t, 100])


def test_faces_entering_and_leaving():
    a, b = face_at(80, 100), face_at(240, 100)
    script = [[a], [b, a], [b, a], [b], [], [a], [a, b]]
    tracker = FaceTracker(ScriptedDetector(script), every=1, smooth=False)
    ids = [sorted(f) for f in run(tracker, len(script))]
    assert ids == [[0], [0, 1], [0, 1], [1], [], [2], [2, 3]]


def test_crossing_faces_keep_identity_and_their_own_smoothing():
    """Two faces pass each other (boxes overlapping at the crossing) and swap left/right order;
    the detector's list order is shuffled every frame and its landmarks are noisy. Each track
    stays on its face, and its smoothed landmarks stay near that face, not between the two."""
    rng = np.random.default_rng(1)
    script, truth = [], []
    for t in range(30):
        a, b = face_at(40 + 8 * t, 100), face_at(272 - 8 * t, 150)  # cross at t ~ 14.5
        truth.append((a, b))
        noisy = [Face(f.box, f.score, f.landmarks + rng.normal(0, 1.0, (5, 2)).astype(np.float32)) for f in (a, b)]
        script.append([noisy[i] for i in rng.permutation(2)])
    frames = run(FaceTracker(ScriptedDetector(script), every=1, smooth=True), len(script))
    for (a, b), faces in zip(truth, frames):
        assert set(faces) == {0, 1}
        np.testing.assert_allclose(centre(faces[0]), centre(a))
        np.testing.assert_allclose(centre(faces[1]), centre(b))
        # One-Euro lag on 8 px/frame motion is a few px; the other face is >= 50 px away
        assert np.abs(faces[0].landmarks - a.landmarks).max() < 12
        assert np.abs(faces[1].landmarks - b.landmarks).max() < 12


def test_lost_face_between_detections_triggers_a_detection():
    a, b = face_at(80, 100), face_at(240, 100)
    script = [[a, b], [a, b], [a], [a], [a], [a]]
    detector = ScriptedTrackingDetector(script)
    ids = [sorted(f) for f in run(FaceTracker(detector, every=10, smooth=False), len(script))]
    assert ids == [[0, 1], [0, 1], [0], [0], [0], [0]]
    assert detector.detect_calls == 2  # the first frame, and the frame where b was lost


class NearSearchingDetector(ScriptedTrackingDetector):
    """With ``detect_near``: the script's faces close to a lost one (as a search around it would
    find), other than the known ones; records what it was asked."""

    def __init__(self, script: list[list[Face]]):
        super().__init__(script)
        self.near_calls: list[list[np.ndarray]] = []

    def detect_near(self, image: np.ndarray, lost: list[Face], known: list[Face]) -> list[Face]:
        self.near_calls.append([face.box for face in lost])
        now = self.script[int(image[0, 0, 0])]
        return [f for f in now if any(np.abs(f.box - p.box).max() < 60 for p in lost)
                and all(np.abs(f.box - k.box).max() >= 20 for k in known)]


def test_a_lost_face_is_looked_for_where_it_was_not_in_the_whole_frame():
    """Track loses b at frame 2 (it moved 30 px, beyond what track() follows): the detector looks
    around b's last place only, finds it there, and b keeps its track; no whole-frame search
    runs until the scheduled one."""
    a, b, b_moved = face_at(80, 100), face_at(240, 100), face_at(270, 100)
    script = [[a, b], [a, b], [a, b_moved], [a, b_moved], [a, b_moved]]
    detector = NearSearchingDetector(script)
    frames = run(FaceTracker(detector, every=10, smooth=False), len(script))
    assert [sorted(f) for f in frames] == [[0, 1]] * 5
    np.testing.assert_allclose(frames[2][1].box, b_moved.box)
    assert detector.detect_calls == 1  # the first frame only
    assert len(detector.near_calls) == 1
    np.testing.assert_allclose(detector.near_calls[0], [b.box])


@pytest.mark.parametrize("every", [0, -1, 1.5, "5", True])
def test_every_must_be_a_whole_number_at_least_one(every):
    with pytest.raises(MfsError, match="every"):
        FaceTracker(ScriptedDetector([]), every=every)


class ShiftedTrackingDetector(ScriptedTrackingDetector):
    """detect() places every face 4 px right of where track() does, so the output tells
    which of the two produced a face's landmarks."""

    def detect(self, image: np.ndarray) -> list[Face]:
        return [Face(f.box + [4, 0, 4, 0], f.score, f.landmarks + [4, 0]) for f in super().detect(image)]


def test_tracked_faces_are_not_redetected_and_new_faces_join_on_detection_frames():
    """Every 3 frames the detector looks for new faces; the face already followed keeps the
    tracker's landmarks (no jump to the detector's estimate), the one entering at frame 4
    starts a track at the next detection frame (6)."""
    a, b = face_at(80, 100), face_at(240, 100)
    script = [[a]] * 4 + [[a, b]] * 5
    detector = ShiftedTrackingDetector(script)
    frames = run(FaceTracker(detector, every=3, smooth=False), len(script))
    assert [sorted(f) for f in frames] == [[0]] * 6 + [[0, 1]] * 3
    assert detector.detect_calls == 3  # frames 0, 3 and 6
    np.testing.assert_allclose(frames[0][0].landmarks, a.landmarks + [4, 0])  # first seen by detect()
    for faces in frames[1:]:
        np.testing.assert_allclose(faces[0].landmarks, a.landmarks)  # then followed by track() only
    np.testing.assert_allclose(frames[6][1].landmarks, b.landmarks + [4, 0])
