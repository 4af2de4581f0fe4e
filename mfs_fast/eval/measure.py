"""What is measured on one face: identity embedding, pooled dlib features, pose, expression.

Pose is read twice: from the 5 landmarks (mesh-derived) and from BlazeFace's keypoints, a
network the training never sees, so a student trained against the mesh cannot please both.

A swapped face is measured where a detector finds it ON THE RESULT image (so a swap that
moves or loses the face is seen as such); when no result face overlaps the target face, the
target's landmarks are used and the face is counted as not re-detected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..face import Face, FaceDetector
from ..face.blazeface import BlazeFace
from ..face.tracking import box_iou
from ..identity import IdentityEncoder
from .expression import Expression, ExpressionMeter
from .pose import KEYPOINT_MODEL_3D, head_pose

POOLED_MAP = "256x2x2"  # dlib's last map; its spatial mean is the 256-d vector the descriptor projects
MIN_IOU = 0.3


@dataclass(frozen=True)
class FaceMeasure:
    """Measurements of one face in one image."""

    face: Face
    embedding: np.ndarray  # (D,) L2-normalised identity embedding
    pooled: np.ndarray  # (256,) dlib pooled features (FD-dlib)
    pose: np.ndarray  # (yaw, pitch, roll) degrees
    expression: Expression
    detected: bool = True  # False: the result face was not found, the target's landmarks were used
    keypoint_pose: np.ndarray | None = None  # (yaw, pitch, roll) from BlazeFace's keypoints; NaN where it saw no face


class FaceMeasurer:
    """Detector + identity encoder + expression meter (+ BlazeFace for the second pose), run on
    all faces of an image at once."""

    def __init__(self, detector: FaceDetector, encoder: IdentityEncoder, expression: ExpressionMeter,
                 keypoints: BlazeFace | None = None) -> None:
        self.detector, self.encoder, self.expression = detector, encoder, expression
        self.keypoints = keypoints

    def keypoint_poses(self, image: np.ndarray, faces: list[Face]) -> list[np.ndarray]:
        """Each face's pose from the BlazeFace detection overlapping it most (NaN: none, or no BlazeFace)."""
        found = self.keypoints.detect(image) if self.keypoints is not None else []
        matches = (_best_overlap(face.box, [d.box for d in found]) for face in faces)
        return [head_pose(found[i].keypoints[:4], image.shape, KEYPOINT_MODEL_3D) if i is not None
                else np.full(3, np.nan) for i in matches]

    def measure(self, image: np.ndarray, faces: list[Face], detected: list[bool] | None = None) -> list[FaceMeasure]:
        """Measure these faces of ``image``."""
        if not faces:
            return []
        landmarks = [f.landmarks for f in faces]
        features = self.encoder.embed_faces(image, landmarks)
        pooled = features.maps[POOLED_MAP].mean(dim=(2, 3)).double().numpy()
        embeddings = features.embedding.double().numpy()
        expressions = self.expression.measure(image, [f.box for f in faces], landmarks)
        flags = detected if detected is not None else [True] * len(faces)
        return [FaceMeasure(f, e, p, head_pose(f.landmarks, image.shape), x, d, k)
                for f, e, p, x, d, k in zip(faces, embeddings, pooled, expressions, flags,
                                            self.keypoint_poses(image, faces))]

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces of an image, largest first (the order the runner numbers them in)."""
        return sorted(self.detector.detect(image), key=lambda f: -f.area)

    def measure_result(self, result: np.ndarray, targets: list[Face]) -> list[FaceMeasure]:
        """Measure each target face as found again on the result (best overlap), or at the
        target's own landmarks when the result has no face there."""
        found = self.detector.detect(result)
        chosen, detected = [], []
        for target in targets:
            best = _best_overlap(target.box, [f.box for f in found])
            chosen.append(found[best] if best is not None else target)
            detected.append(best is not None)
        return self.measure(result, chosen, detected)


def _best_overlap(box: np.ndarray, boxes: list[np.ndarray]) -> int | None:
    """Index of the box overlapping ``box`` most, if by at least MIN_IOU."""
    overlaps = [box_iou(box, other) for other in boxes]
    best = int(np.argmax(overlaps)) if overlaps else -1
    return best if best >= 0 and overlaps[best] >= MIN_IOU else None
