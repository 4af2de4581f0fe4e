"""Face detectors behind the FaceDetector interface, and a registry to create them by name.

BlazeFaceDetector = MediaPipe's full-range BlazeFace for boxes (on the whole frame and on
overlapping tiles, for small faces) + the 468-point face mesh for precise landmarks in full
resolution, both run from the original .tflite weights by LiteRT or the project's PyTorch
executor (tflite_engine). For video, track() re-runs only the mesh around the previous
frame's faces, all faces in one batch; call detect() again every few frames or when a face is lost.
"""

from __future__ import annotations

import math

from typing import Callable

import numpy as np

from ..errors import MfsError
from ..media import check_bgr_image
from ..registry import Note, Probe, Registry, always_available
from .blazeface import INPUT_SIZE, BlazeFace, Detection, shrink, weighted_nms
from .scrfd import SCRFDDetector
from .face_mesh import FaceMesh, Roi, five_points, level_angle, roi_from_detection
from .tiles import crop, tile_boxes
from .types import Face, FaceDetector

__all__ = ["DETECTORS", "BlazeFaceDetector", "WholeFrameBlazeFaceDetector", "available_detectors", "create_detector",
           "detector_report", "register_detector"]

DetectorFactory = Callable[..., FaceDetector]
DETECTORS: Registry[FaceDetector] = Registry("face detector")


def register_detector(name: str, factory: DetectorFactory, probe: Probe = always_available,
                      note: Note = "built in") -> None:
    """Make `create_detector(name, **options)` call `factory(**options)` (e.g. an ONNX detector);
    ``probe`` says why it cannot run here, ``note`` what ``mfs-fast doctor`` says when it can."""
    DETECTORS.add(name, factory, probe, note)


def available_detectors() -> list[str]:
    """Names create_detector accepts."""
    return sorted(DETECTORS.names())


def detector_report() -> list[tuple[str, bool, str]]:
    """(name, usable, reason or what it needs) for every registered detector, by name."""
    return sorted(DETECTORS.report())


def create_detector(name: str = "blazeface", **options) -> FaceDetector:
    """A new detector by registered name, or from a user-supplied SCRFD ``.onnx`` file path."""
    if str(name).lower().endswith(".onnx"):
        return SCRFDDetector(name, **options)
    if name not in DETECTORS:
        raise MfsError(f"unknown face detector {name!r}: use one of {', '.join(available_detectors())}, "
                       f"or the path of an SCRFD .onnx file")
    return DETECTORS.create(name, **options)


# A ROI around 5 points, fitted to MediaPipe's mesh-based ROI (box around the 468 points,
# x1.5) on the 105 faces of skimage's astronaut and the shared test photos (upright and
# rotated +-25-30 deg): centre 0.40 of the way from the eye midpoint to the mouth midpoint,
# side 1.9 x (eye distance + eye-to-mouth distance); spread of the fitted ratio: 4 %.
_TRACK_CENTRE_FRACTION = 0.40
_TRACK_SIZE_FACTOR = 1.9


def roi_from_five_points(landmarks: np.ndarray) -> Roi:
    """Mesh ROI for a face known only by its 5 points (previous frame, any detector)."""
    eye_1, eye_2, _, mouth_1, mouth_2 = np.asarray(landmarks, np.float64)
    eyes, mouth = (eye_1 + eye_2) / 2, (mouth_1 + mouth_2) / 2
    centre = eyes + _TRACK_CENTRE_FRACTION * (mouth - eyes)
    size = _TRACK_SIZE_FACTOR * (np.linalg.norm(eye_2 - eye_1) + np.linalg.norm(mouth - eyes))
    return Roi(float(centre[0]), float(centre[1]), float(size), level_angle(eye_1, eye_2))


def _coarse_five_points(keypoints: np.ndarray) -> np.ndarray:
    """5 points from BlazeFace's keypoints alone: it gives a mouth centre, not corners, so the
    corners are put +-0.415 eye distances along the eye line (the ArcFace template's ratio)."""
    eye_1, eye_2, nose, mouth = keypoints[:4]
    half = 0.415 * (eye_2 - eye_1)
    return np.stack([eye_1, eye_2, nose, mouth - half, mouth + half]).astype(np.float32)


def _moved_box(box: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Carry a box along with its landmarks (shift + isotropic scale), so tracked boxes keep
    the detector's box convention."""
    c0, c1 = before.mean(axis=0), after.mean(axis=0)
    spread0 = np.sqrt(((before - c0) ** 2).sum(axis=1).mean())
    spread1 = np.sqrt(((after - c1) ** 2).sum(axis=1).mean())
    scale = spread1 / spread0 if spread0 > 0 else 1.0
    corners = (np.asarray(box, np.float64).reshape(2, 2) - c0) * scale + c1
    return corners.reshape(4).astype(np.float32)


def _eye_midpoint_within(a: np.ndarray, b: np.ndarray, reach: float) -> bool:
    return float(np.linalg.norm(a[:2].mean(axis=0) - b[:2].mean(axis=0))) < reach


def _eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[1] - points[0]))


def _same_face(a: np.ndarray, b: np.ndarray) -> bool:
    """Two landmark sets on one face: eye midpoints within the smaller eye distance.

    Two people's eye midpoints are 2+ eye distances apart. Comparing all five points (as
    before 2026-12-06) kept a second, wrongly scaled copy of a small face: BlazeFace's coarse
    whole-frame box around a 24 px face (5x its size) led the mesh to points 1.7x too far
    apart, whose mean distance to the right ones was just over a quarter eye distance."""
    return _eye_midpoint_within(a, b, min(_eye_distance(a), _eye_distance(b)))


# Full-range BlazeFace finds some faces only 3.4 px between the eyes in its 192 px input, but
# not reliably: the astronaut pasted at random places into 1080p frames was found 4/4 times
# at 24 px and 1/4 times at 20 px through 960 px tiles (4.8 and 4 px in the input). Tiles are
# sized so a face min_eye_distance px between the eyes is 6 px in the model's input: 768 px
# for 24 px, which costs the same 6 tiles on a 1080p frame as 960 px (and 2 on 720p).
TILE_PER_EYE_DISTANCE = 192 / 6
TILE_OVERLAP = 0.25  # faces up to a quarter tile wide are whole in some tile; larger ones: the whole-frame pass
# Where faces already seen are small (eyes less than SMALL_FACE_EYES x min_eye_distance apart: a
# crowd, a wide shot), smaller ones are likely too, so the search there looks for faces
# FINE_EYE_DISTANCE x that size (21 px at the default 24): 8 tiles instead of 6 at 1080p, only on
# such frames. A 720p close-up pays nothing; the 1080p crowd clip, tracked, finds 94 of its 103
# labelled faces instead of 88, at no measurable cost (bench/detect_track.py, bench/RESULTS.md).
SMALL_FACE_EYES = 2.0
FINE_EYE_DISTANCE = 7 / 8
# A face the tracker just lost is looked for again in a square this many times its box's side,
# centred on where it was (detect_near): one small pass instead of the whole search.
NEAR_REGION = 3.0


def _region_around(box: np.ndarray, shape: tuple[int, ...], factor: float) -> tuple[int, int, int, int]:
    """(x, y, w, h): a square ``factor`` x the box's longer side around its centre, inside the frame."""
    height, width = shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    half = factor * max(x1 - x0, y1 - y0, 1.0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = max(0, int(cx - half)), max(0, int(cy - half))
    right, bottom = min(width, int(np.ceil(cx + half))), min(height, int(np.ceil(cy + half)))
    return left, top, max(1, right - left), max(1, bottom - top)


def check_min_eye_distance(pixels: object) -> float:
    """The smallest faces to look for, in frame pixels between the eyes: a positive number."""
    if isinstance(pixels, bool) or not isinstance(pixels, (int, float, np.integer, np.floating)) or not pixels > 0 \
            or not math.isfinite(pixels):
        raise MfsError(f"min_eye_distance must be a positive number of pixels, got {pixels!r}")
    return float(pixels)


def _on_face(detection: Detection, face: Face) -> bool:
    """A detection of an already known face: its eye midpoint within one eye distance of the
    face's (see _same_face)."""
    return _eye_midpoint_within(detection.keypoints, face.landmarks, _eye_distance(face.landmarks))


class BlazeFaceDetector:
    """MediaPipe full-range BlazeFace + face mesh (468 points -> the 5 ArcFace points).

    min_score: BlazeFace candidates kept. MediaPipe uses 0.5 (0.6 in its tfjs full-range
    config); 0.4 here because BlazeFace scores the smallest face of group_6faces.jpg only
    0.41-0.55 depending on flip and resize, and the mesh's face-presence check
    (min_presence) rejects the extra false positives (on textures, logos and the dog photo
    those score < 0.3 and get presence ~0).
    refine_landmarks=False skips the mesh: the 5 points then come from BlazeFace's coarse
    keypoints (mouth corners estimated) and nothing is confirmed by the mesh.
    min_eye_distance: the smallest faces to find, in frame pixels between the eyes. Frames
    larger than one tile of TILE_PER_EYE_DISTANCE x that are also searched in overlapping
    tiles (all tiles and the whole frame in one batched pass): a 1080p frame is 6 tiles for
    24 px, a 720p frame 2. None: the whole frame only (faces below ~2 % of the frame's long side are missed).
    engine: what runs the .tflite models (see tflite_engine: "auto" = LiteRT when installed).
    """

    name = "blazeface"

    def __init__(self, min_score: float = 0.4, refine_landmarks: bool = True, min_presence: float = 0.5,
                 nms_iou: float = 0.3, min_eye_distance: float | None = 24.0, engine: str = "auto"):
        if min_eye_distance is not None:
            check_min_eye_distance(min_eye_distance)
        self.blazeface = BlazeFace(min_score=min_score, nms_iou=nms_iou, engine=engine)
        self.refine_landmarks = bool(refine_landmarks)
        self.min_presence = float(min_presence)
        self.min_eye_distance = min_eye_distance
        self.tile = self._tile(min_eye_distance)
        self.fine_tile = self._tile(None if min_eye_distance is None else min_eye_distance * FINE_EYE_DISTANCE)
        self.mesh = FaceMesh(engine) if self.refine_landmarks else None
        self._settings = dict(min_score=min_score, refine_landmarks=refine_landmarks, min_presence=min_presence,
                              nms_iou=nms_iou, min_eye_distance=min_eye_distance, engine=engine)

    def clone(self) -> "BlazeFaceDetector":
        """The same detector with interpreters of its own: one interpreter must not run in two
        threads at once, so a search in another thread (:class:`~mfs_fast.face.FaceTracker`'s
        ``background``) runs on a clone."""
        return type(self)(**self._settings)

    @staticmethod
    def _tile(eye_distance: float | None) -> int | None:
        return None if eye_distance is None else max(1, round(float(eye_distance) * TILE_PER_EYE_DISTANCE))

    def candidates(self, image: np.ndarray, fine: bool = False) -> list[Detection]:
        """BlazeFace detections in the whole frame and, when it is larger than a tile, in every
        tile (``fine``: the smaller tiles of FINE_EYE_DISTANCE); in frame pixels, overlapping ones
        merged, best score first.

        The frame is shrunk once so a tile is the model's 192 px; the tiles are views into it
        and go through the model in one batch with the whole (shrunk) frame."""
        h, w = image.shape[:2]
        tile = self.fine_tile if fine else self.tile
        if tile is None or max(h, w) <= tile:
            return self.blazeface.detect(image)
        small = shrink(image, INPUT_SIZE / tile)
        small_h, small_w = small.shape[:2]
        regions = [(0, 0, small_w, small_h)] + tile_boxes(small_w, small_h, INPUT_SIZE, TILE_OVERLAP)
        per_region = self.blazeface.detect_many([crop(small, region) for region in regions])
        found = [(d, x, y) for (x, y, _, _), detections in zip(regions, per_region) for d in detections]
        if not found:
            return []
        to_frame = np.float32([w / small_w, h / small_h])  # pixel centres: (p + 0.5) * ratio - 0.5
        boxes = np.stack([((d.box.reshape(2, 2) + [x + 0.5, y + 0.5]) * to_frame - 0.5).reshape(4)
                          for d, x, y in found])
        keypoints = np.stack([(d.keypoints + [x + 0.5, y + 0.5]) * to_frame - 0.5 for d, x, y in found])
        scores = np.array([d.score for d, _, _ in found])
        return [Detection(box.astype(np.float32), points.astype(np.float32), score)
                for box, points, score in weighted_nms(boxes, keypoints, scores, self.blazeface.nms_iou)]

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces, best detector score first."""
        return self.detect_new(image, [])

    def detect_new(self, image: np.ndarray, known: list[Face]) -> list[Face]:
        """Faces other than ``known`` (e.g. those being tracked), best detector score first.

        Detections on a known face are dropped before the mesh runs, so a tracker that looks
        for new faces every few frames pays the mesh only for faces it does not follow yet.
        Where ``known`` has small faces the search uses the fine tiles; where it has none, the
        usual ones, followed by the fine ones if that finds small faces (SMALL_FACE_EYES).
        """
        check_bgr_image(image, "a face-detection input")
        if self._has_small(known):
            return self._new_faces(image, known, fine=True)
        faces = self._new_faces(image, known, fine=False)
        if self.fine_tile != self.tile and self._has_small(faces):
            faces = sorted(faces + self._new_faces(image, known + faces, fine=True), key=lambda f: -f.score)
        return faces

    def _has_small(self, faces: list[Face]) -> bool:
        if self.min_eye_distance is None:
            return False
        return any(_eye_distance(face.landmarks) < SMALL_FACE_EYES * self.min_eye_distance for face in faces)

    def detect_near(self, image: np.ndarray, lost: list[Face], known: list[Face]) -> list[Face]:
        """Faces other than ``known`` in a region around each face of ``lost`` (NEAR_REGION x its
        box, e.g. faces a tracker just lost), best detector score first.

        Why: in a crowd, faces turn away or pass behind someone every few frames; searching the
        whole frame at once each time cost the 1080p crowd clip ~35 ms a loss, a pass over the
        regions around the lost faces costs a few ms and finds them as well (bench/RESULTS.md).
        """
        check_bgr_image(image, "a face-detection input")
        regions = [_region_around(face.box, image.shape, NEAR_REGION) for face in lost]
        per_region = self.blazeface.detect_many([crop(image, region) for region in regions])
        found = [Detection(d.box + np.float32([x, y, x, y]), d.keypoints + np.float32([x, y]), d.score)
                 for (x, y, _, _), detections in zip(regions, per_region) for d in detections]
        return self._confirmed(image, sorted(found, key=lambda d: -d.score), known)

    def _new_faces(self, image: np.ndarray, known: list[Face], fine: bool) -> list[Face]:
        """detect_new's search with one tile size."""
        return self._confirmed(image, self.candidates(image, fine), known)

    def _confirmed(self, image: np.ndarray, candidates: list[Detection], known: list[Face]) -> list[Face]:
        """The ``candidates`` (best first) that are new faces: not on a ``known`` one, confirmed by
        the mesh (which also gives their landmarks), one per face."""
        detections = [d for d in candidates if not any(_on_face(d, face) for face in known)]
        if not self.refine_landmarks:
            return [Face(d.box, d.score, _coarse_five_points(d.keypoints)) for d in detections]
        meshes = self.mesh.run(image, [roi_from_detection(d.box, d.keypoints) for d in detections])
        faces: list[Face] = []
        for detection, mesh in zip(detections, meshes):
            if mesh.presence < self.min_presence:
                continue  # the mesh does not see a face there: a detector false positive
            landmarks = five_points(mesh.points)
            if not any(_same_face(landmarks, kept.landmarks) for kept in faces + list(known)):
                # Detections come best first, so a second box on the same face is the weaker one.
                faces.append(Face(detection.box, detection.score, landmarks))
        return faces

    def track(self, image: np.ndarray, previous: list[Face]) -> list[Face]:
        """The previous frame's faces followed into this frame by the mesh alone.

        Same order as `previous`; faces whose face-presence drops below min_presence, and
        later duplicates of a face already tracked, are left out. The score of a tracked
        face is its presence probability.
        """
        check_bgr_image(image, "a face-detection input")
        if self.mesh is None:
            raise MfsError("track() needs the face mesh: create the detector with refine_landmarks=True")
        meshes = self.mesh.run(image, [roi_from_five_points(face.landmarks) for face in previous])
        tracked: list[Face] = []
        for face, mesh in zip(previous, meshes):
            landmarks = five_points(mesh.points)
            if mesh.presence < self.min_presence or any(_same_face(landmarks, kept.landmarks) for kept in tracked):
                continue  # lost, or two tracks converged on one face
            tracked.append(Face(_moved_box(face.box, face.landmarks, landmarks), mesh.presence, landmarks))
        return tracked


class WholeFrameBlazeFaceDetector(BlazeFaceDetector):
    """The detector as it was before 2026-12-06, for comparison and as a way back: one pass
    over the whole frame (no tiles), run by the PyTorch executor."""

    name = "blazeface-whole-frame"

    def __init__(self, **options):
        super().__init__(**{"min_eye_distance": None, "engine": "torch", **options})


register_detector(BlazeFaceDetector.name, BlazeFaceDetector)
register_detector(WholeFrameBlazeFaceDetector.name, WholeFrameBlazeFaceDetector,
                  note="built in: one whole-frame pass, PyTorch executor (blazeface before tiles and LiteRT)")
# create_detector("scrfd", model_path=...) or $MFS_FAST_SCRFD_MODEL; usable wherever onnxruntime is
register_detector(SCRFDDetector.name, SCRFDDetector, probe=SCRFDDetector.unavailable_reason, note=SCRFDDetector.needs)
