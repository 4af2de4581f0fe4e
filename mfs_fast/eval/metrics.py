"""Per-face scores and their aggregates (the paper's protocol, with offline networks).

Per swapped face: cosine similarity of the result to its own source and of the target to
the same source (dlib embeddings), whether the result's nearest source among all the run's
sources is its own (ID retrieval), the L2 head-pose difference to the target (degrees) and the
expression error to the target, the sharpness ratio and eye/skin colour shifts
(:mod:`.appearance`). Over a set of faces: the means, top-1 retrieval in percent,
the identity gain (mean result similarity minus mean target similarity: what the swap added)
and FD-dlib between the result and target features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .appearance import Appearance
from .expression import expression_errors
from .frechet import frechet_distance
from .measure import FaceMeasure
from .pose import pose_difference


@dataclass(frozen=True)
class FaceScore:
    """One swapped face: where it came from and how it scored."""

    method: str
    source: int  # index into the run's sources
    target: str  # target file name
    frame: int  # frame index in the target (0 for an image)
    face: int  # face number in the target frame (largest first)
    detected: bool  # found again on the result image
    similarity: float  # cos(result, own source)
    target_similarity: float  # cos(target, own source)
    retrieved: bool  # own source is the result's nearest source
    pose_error: float  # degrees, L2 over (yaw, pitch, roll)
    expression_error: float  # mesh ratios (NaN unless the mesh found both faces)
    expression_error_5pt: float  # mouth width / eye distance
    result_pooled: np.ndarray
    target_pooled: np.ndarray
    result_landmarks: np.ndarray
    target_landmarks: np.ndarray
    look: Appearance  # sharpness ratio and colour shifts against the target
    pose_error_keypoints: float = float("nan")  # degrees, the same from BlazeFace's keypoints (NaN: not both seen)


def score_face(method: str, source: int, target: str, frame: int, face: int, result: FaceMeasure,
               reference: FaceMeasure, sources: np.ndarray, look: Appearance) -> FaceScore:
    """Score one result face against its target face; ``sources`` are all source embeddings (S x D)."""
    to_sources = sources @ result.embedding
    mesh, five = expression_errors(result.expression, reference.expression)
    return FaceScore(method, source, target, frame, face, result.detected, float(to_sources[source]),
                     float(sources[source] @ reference.embedding), int(np.argmax(to_sources)) == source,
                     pose_difference(result.pose, reference.pose), mesh, five, result.pooled,
                     reference.pooled, result.face.landmarks, reference.face.landmarks, look,
                     pose_error_keypoints=_keypoint_pose_error(result, reference))


def _keypoint_pose_error(result: FaceMeasure, reference: FaceMeasure) -> float:
    if result.keypoint_pose is None or reference.keypoint_pose is None:
        return float("nan")
    return pose_difference(result.keypoint_pose, reference.keypoint_pose)


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def aggregate(scores: list[FaceScore], n_sources: int, fd: bool = True) -> dict:
    """The metrics of a set of face scores (JSON-ready; None where undefined). ``fd=False``
    leaves FD-dlib out (per pair: a handful of faces says nothing about a distribution)."""
    if not scores:
        return {"faces": 0}
    similarity = _mean([s.similarity for s in scores])
    target_similarity = _mean([s.target_similarity for s in scores])
    out = {
        "faces": len(scores),
        "result_face_detected_pct": 100.0 * float(np.mean([s.detected for s in scores])),
        "id_retrieval_top1_pct": (100.0 * float(np.mean([s.retrieved for s in scores]))
                                  if n_sources > 1 else "n/a (1 source)"),
        "id_similarity": similarity,
        "id_similarity_target": target_similarity,
        "id_gain": similarity - target_similarity if similarity is not None and target_similarity is not None else None,
        "pose_error_deg": _mean([s.pose_error for s in scores]),
        "pose_error_keypoints_deg": _mean([s.pose_error_keypoints for s in scores]),
        "expression_error": _mean([s.expression_error for s in scores]),
        "expression_mesh_faces": sum(bool(np.isfinite(s.expression_error)) for s in scores),
        "expression_error_5pt": _mean([s.expression_error_5pt for s in scores]),
        "sharpness_ratio": _mean([s.look.sharpness_ratio for s in scores]),
        "eye_colour_shift": _mean([s.look.eye_colour_shift for s in scores]),
        "skin_colour_shift": _mean([s.look.skin_colour_shift for s in scores]),
    }
    if fd:
        out["fd_dlib"] = frechet_distance(np.stack([s.result_pooled for s in scores]),
                                          np.stack([s.target_pooled for s in scores]))
    return out
