"""Steady landmarks across video frames: track every frame, look for new faces every N, smooth.

With a detector that can ``track`` (landmarks from the previous position, cheaper than
detection), faces are followed by ``track`` on every frame and the detector only looks for
new faces every N frames or when a face is lost; tracked faces are never re-detected, so
their landmarks do not jump between the detector's and the tracker's estimate. Faces are
matched to tracks by index through an assignment on box overlap and centre distance
(:func:`match_boxes`), so faces entering, leaving, crossing or changing order in the
detector's list keep their own track and smoothing state. Each
track's 5 landmarks go through its own One-Euro filter (Casiez et al., CHI 2012): strong
smoothing while the face is still, little lag when it moves.

With ``background=True`` (live video, where each frame's latency counts) the periodic search
for new faces, and the one after a face is lost, run in a thread of their own on a clone of the
detector, so no frame waits for them: their faces join the tracks on the first frame after the
search finishes, followed into that frame by ``track``. With nothing to track, the frame is
searched at once, as without ``background``.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import MfsError
from .types import Face, FaceDetector


class OneEuroFilter:
    """Adaptive low-pass filter for a vector signal sampled at a fixed rate."""

    def __init__(self, rate: float = 30.0, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0):
        self.rate, self.min_cutoff, self.beta, self.d_cutoff = rate, min_cutoff, beta, d_cutoff
        self.value: np.ndarray | None = None
        self.derivative: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau * self.rate)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.value is None:
            self.value, self.derivative = x.copy(), np.zeros_like(x)
            return x
        d = (x - self.value) * self.rate
        self.derivative = self.derivative + self._alpha(self.d_cutoff) * (d - self.derivative)
        cutoff = self.min_cutoff + self.beta * np.abs(self.derivative)
        self.value = self.value + self._alpha(cutoff) * (x - self.value)
        return self.value


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes (0 when they do not overlap)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def min_cost_assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """Rows matched to columns, each used at most once, with the least total cost.

    The Hungarian method (Kuhn-Munkres with potentials, O(n^2 m)) on a finite N x M matrix;
    returns min(N, M) ``(row, column)`` pairs sorted by row. Written out here because face
    counts are small and SciPy is not a runtime dependency.
    """
    cost = np.asarray(cost, np.float64)
    if cost.ndim != 2 or not np.isfinite(cost).all():
        raise ValueError("cost must be a finite 2-D matrix")
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return []
    if rows > cols:
        return sorted((r, c) for c, r in min_cost_assignment(cost.T))
    c = cost.tolist()
    u, v = [0.0] * (rows + 1), [0.0] * (cols + 1)
    owner, way = [0] * (cols + 1), [0] * (cols + 1)  # owner[j]: row (1-based) holding column j
    for row in range(1, rows + 1):
        owner[0], j0 = row, 0
        min_slack, used = [math.inf] * (cols + 1), [False] * (cols + 1)
        while owner[j0] != 0:
            used[j0] = True
            i0, delta, j1 = owner[j0], math.inf, 0
            for j in range(1, cols + 1):
                if not used[j]:
                    slack = c[i0 - 1][j - 1] - u[i0] - v[j]
                    if slack < min_slack[j]:
                        min_slack[j], way[j] = slack, j0
                    if min_slack[j] < delta:
                        delta, j1 = min_slack[j], j
            for j in range(cols + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    min_slack[j] -= delta
            j0 = j1
        while j0:  # flip the augmenting path
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    return sorted((owner[j] - 1, j - 1) for j in range(1, cols + 1) if owner[j])


def _centre_and_size(box: np.ndarray) -> tuple[np.ndarray, float]:
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2]), max(math.sqrt(max(x2 - x1, 0) * max(y2 - y1, 0)), 1e-6)


def match_boxes(previous: list[np.ndarray], current: list[np.ndarray], min_iou: float = 0.3,
                max_shift: float = 0.5) -> list[tuple[int, int]]:
    """``(previous index, current index)`` pairs for boxes that are the same face one frame on.

    A pair is allowed when the boxes overlap by ``min_iou`` or more, or their centres are
    less than ``max_shift`` face sizes apart (fast motion; size = sqrt of the box area).
    Among the allowed pairs, one assignment minimises the sum of (1 - IoU) + centre shift in
    face sizes, so two faces that pass each other or swap order in the detector's list keep
    their own tracks; by index, each box is used at most once.
    """
    if not previous or not current:
        return []
    cost = np.empty((len(previous), len(current)))
    allowed = np.zeros_like(cost, bool)
    for i, a in enumerate(previous):
        centre_a, size_a = _centre_and_size(a)
        for j, b in enumerate(current):
            centre_b, size_b = _centre_and_size(b)
            iou = box_iou(a, b)
            shift = float(np.linalg.norm(centre_a - centre_b)) / math.sqrt(size_a * size_b)
            cost[i, j] = (1.0 - iou) + shift
            allowed[i, j] = iou >= min_iou or shift < max_shift
    # A disallowed pair costs more than any set of allowed ones: the assignment first keeps as
    # many allowed pairs as it can, then the cheapest; disallowed pairs it is forced into are dropped.
    forbidden = 1.0 + cost[allowed].sum() if allowed.any() else 1.0
    pairs = min_cost_assignment(np.where(allowed, cost, forbidden + cost))
    return [(i, j) for i, j in pairs if allowed[i, j]]


@dataclass(eq=False)  # tracks are compared by identity, never by their (array-holding) fields
class Track:
    """One face followed across frames: its latest face, its own landmark filter and a stable id."""

    face: Face
    smoother: OneEuroFilter
    track_id: int
    extra: dict = field(default_factory=dict)


class FaceTracker:
    """``update(frame) -> faces`` for consecutive video frames.

    Follows the faces with the detector's ``track`` where it has one, and runs the detector
    for new faces every ``every`` frames and whenever there is nothing to track; a face that
    ``track`` loses in between is looked for again at once around where it was (the
    detector's ``detect_near``; the whole search with a detector without it). A detector
    without ``track`` runs on every frame.
    Faces are matched to the previous frame's tracks by :func:`match_boxes`: matched faces
    keep their track (id and landmark filter), new faces start tracks, unmatched tracks end.
    ``update`` returns faces in track order (oldest track first); ``ids`` holds their track ids.
    """

    def __init__(self, detector: FaceDetector, every: int = 5, smooth: bool = True, fps: float = 30.0,
                 min_cutoff: float = 1.0, beta: float = 0.05, background: bool = False) -> None:
        check_every(every)
        self.detector, self.every, self.smooth = detector, int(every), smooth
        self.filter_options = dict(rate=fps, min_cutoff=min_cutoff, beta=beta)
        self.tracks: list[Track] = []
        self.frame_index = 0
        self._next_id = 0
        # a search for new faces in a thread needs track, detect_new and an interpreter of its own
        self.background = background and all(hasattr(detector, name) for name in ("track", "detect_new", "clone"))
        self._searcher: FaceDetector | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._search: Future | None = None

    @property
    def ids(self) -> list[int]:
        """Track ids of the faces the last ``update`` returned, in the same order."""
        return [t.track_id for t in self.tracks]

    def update(self, frame: np.ndarray) -> list[Face]:
        """The faces in ``frame``, continuing the tracks of the previous frame. With
        ``background``, ``frame`` must stay unchanged until the next call (it may be searched)."""
        if self.background:
            return self._update_in_background(frame)
        if self.tracks and hasattr(self.detector, "track"):
            previous = [t.face for t in self.tracks]
            faces = self.detector.track(frame, previous)
            if self.frame_index % self.every == 0:
                faces = faces + self._new_faces(frame, faces)  # time to look for new ones
            elif len(faces) < len(previous):
                faces = faces + self._found_again(frame, not_among(previous, faces), faces)
        else:
            faces = self.detector.detect(frame)
        self.frame_index += 1
        self.tracks = self._associate(faces)
        return [t.face for t in self.tracks]

    def _update_in_background(self, frame: np.ndarray) -> list[Face]:
        if not self.tracks:  # nothing to follow (the first frame, an empty scene): this frame needs the search
            faces, wanted = self.detector.detect(frame), False
        else:
            faces = self.detector.track(frame, [t.face for t in self.tracks])
            wanted = len(faces) < len(self.tracks) or self.frame_index % self.every == 0
        if self._search is not None and self._search.done():
            found, self._search = self._search.result(), None
            found = not_among(found, faces)
            if found:  # found on an earlier frame: followed into this one, as tracks are
                moved = self.detector.track(frame, found)
                faces = faces + not_among(moved, faces)
        if wanted and self._search is None:
            if self._pool is None:
                self._searcher = self.detector.clone()
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mfs-face-search")
            self._search = self._pool.submit(self._searcher.detect_new, frame, list(faces))
        self.frame_index += 1
        self.tracks = self._associate(faces)
        return [t.face for t in self.tracks]

    def close(self) -> None:
        """Stop the background search, if any (its result is dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool, self._search = None, None

    def _found_again(self, frame: np.ndarray, lost: list[Face], tracked: list[Face]) -> list[Face]:
        """Faces just lost, looked for again where they were (a detector with ``detect_near``),
        else by the whole search."""
        if lost and hasattr(self.detector, "detect_near"):
            return self.detector.detect_near(frame, lost, tracked)
        return self._new_faces(frame, tracked)

    def _new_faces(self, frame: np.ndarray, tracked: list[Face]) -> list[Face]:
        """Detected faces that are not among ``tracked`` (boxes overlapping by IoU > 0.3)."""
        if hasattr(self.detector, "detect_new"):  # skips the work on tracked faces (BlazeFaceDetector)
            return self.detector.detect_new(frame, tracked)
        return not_among(self.detector.detect(frame), tracked)

    def _associate(self, faces: list[Face]) -> list[Track]:
        """Continue matched tracks, start new ones for unmatched faces; unmatched tracks end."""
        matched = {j: i for i, j in match_boxes([t.face.box for t in self.tracks], [f.box for f in faces])}
        tracks = []
        for j, face in enumerate(faces):
            if j in matched:
                track = self.tracks[matched[j]]
            else:
                track = Track(face, OneEuroFilter(**self.filter_options), self._next_id)
                self._next_id += 1
            if self.smooth:
                landmarks = track.smoother(face.landmarks.reshape(-1)).reshape(5, 2).astype(np.float32)
                face = replace(face, landmarks=landmarks)
            track.face = face
            tracks.append(track)
        return sorted(tracks, key=lambda t: t.track_id)


def not_among(found: list[Face], known: list[Face], max_iou: float = 0.3) -> list[Face]:
    """The faces of ``found`` that are none of ``known`` (no box overlap above ``max_iou``)."""
    return [f for f in found if all(box_iou(f.box, k.box) <= max_iou for k in known)]


def check_every(every: object) -> int:
    """``every`` (detect every N frames) as an int, or an MfsError saying what is allowed."""
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise MfsError(f"every (run the detector every N frames) must be a whole number >= 1, got {every!r}")
    return int(every)


def landmark_jitter(sequence: list[np.ndarray]) -> dict[str, float]:
    """Jitter of landmarks over frames of a *static* face, in pixels.

    ``std``: RMS distance of each landmark from its mean position; ``step``: RMS frame-to-frame
    displacement. Both are 0 for perfectly steady landmarks.
    """
    points = np.stack([np.asarray(p, np.float64).reshape(-1, 2) for p in sequence])  # T x K x 2
    spread = np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=2).mean())
    steps = np.sqrt((np.diff(points, axis=0) ** 2).sum(axis=2).mean()) if len(points) > 1 else 0.0
    return {"std": float(spread), "step": float(steps)}
