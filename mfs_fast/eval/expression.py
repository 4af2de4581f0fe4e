"""Expression measures of a face, compared between the swap and its target.

With the 468-point face mesh (MediaPipe's, run by :class:`mfs_fast.face.face_mesh.FaceMesh`)
three ratios, each divided by the distance between the eye centres (scale-free):

- ``mouth_open``: inner-lip gap, points 13 (upper) to 14 (lower);
- ``mouth_width``: mouth corners 61 to 291;
- ``eye_open``: mean lid gap of both eyes, 159 to 145 and 386 to 374.

Without the mesh (it is not loadable, or it says no face is there) only the 5 points are
available and the one ratio they carry is used: ``mouth_width`` = mouth corners / eye centres.
Both errors are reported: ``expression_error`` (mesh ratios, over the faces the mesh found
in both images) and ``expression_error_5pt`` (the 5-point ratio, over every face); each is the
mean absolute difference of the ratios, result vs target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..face.face_mesh import FaceMesh, five_points, roi_from_detection

MESH_PAIRS = {"mouth_open": ((13, 14),), "mouth_width": ((61, 291),), "eye_open": ((159, 145), (386, 374))}
MIN_PRESENCE = 0.5


def _eye_distance(five: np.ndarray) -> float:
    return float(np.linalg.norm(five[1] - five[0]))


def five_point_expression(landmarks: np.ndarray) -> dict[str, float]:
    """``mouth_width`` / eye distance from the 5 landmarks."""
    five = np.asarray(landmarks, np.float64).reshape(5, 2)
    return {"mouth_width": float(np.linalg.norm(five[4] - five[3])) / max(_eye_distance(five), 1e-6)}


def mesh_expression(points: np.ndarray) -> dict[str, float]:
    """The three ratios from 468 mesh points (frame pixels)."""
    xy = np.asarray(points, np.float64)[:, :2]
    scale = max(_eye_distance(five_points(xy)), 1e-6)
    return {name: float(np.mean([np.linalg.norm(xy[i] - xy[j]) for i, j in pairs])) / scale
            for name, pairs in MESH_PAIRS.items()}


@dataclass(frozen=True)
class Expression:
    """A face's ratios: always the 5-point one, the mesh ones when the mesh found the face."""

    five: dict[str, float]
    mesh: dict[str, float] | None = None


class ExpressionMeter:
    """Expression ratios of faces in frames (the mesh only when ``use_mesh``)."""

    def __init__(self, use_mesh: bool = True) -> None:
        self.mesh: FaceMesh | None = FaceMesh() if use_mesh else None

    def measure(self, frame_bgr: np.ndarray, boxes: list[np.ndarray], landmarks: list[np.ndarray]) -> list[Expression]:
        """One :class:`Expression` per face (boxes and 5 landmarks in frame pixels)."""
        meshes: list[dict[str, float] | None] = [None] * len(landmarks)
        if self.mesh is not None and landmarks:
            rois = [roi_from_detection(np.asarray(b), np.asarray(p)) for b, p in zip(boxes, landmarks)]
            for i, result in enumerate(self.mesh.run(frame_bgr, rois)):
                if result.presence >= MIN_PRESENCE:
                    meshes[i] = mesh_expression(result.points)
        return [Expression(five_point_expression(p), m) for p, m in zip(landmarks, meshes)]


def expression_errors(result: Expression, target: Expression) -> tuple[float, float]:
    """(mesh error, 5-point error): mean absolute ratio differences; the mesh error is NaN
    unless the mesh found both faces."""
    five = float(np.mean([abs(result.five[k] - target.five[k]) for k in result.five]))
    if result.mesh is None or target.mesh is None:
        return float("nan"), five
    return float(np.mean([abs(result.mesh[k] - target.mesh[k]) for k in MESH_PAIRS])), five
