"""MediaPipe's 468-point face mesh, run on rotated square regions of a frame, and the 5
ArcFace-order points derived from it.

ROIs follow MediaPipe's face landmark graph: a square of 1.5x the long side of the face
box, centred on the box, rotated so the eyes are level (from a detection: its two eye
keypoints; from a previous mesh: points 33 and 263 and the box around all points). The
crop is warped to 192x192 (border replicated), fed in [0, 1] RGB, and the 468 (x, y, z)
outputs (input pixels) are mapped back through the same rotation. The face-presence
output is a logit.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..preprocess import bgr_to_rgb, to_unit
from .model_files import tflite_model_path
from .tflite_engine import LiteRTGraph, load_tflite_model

MODEL_FILE = "face_landmark.tflite"
INPUT_SIZE = 192
NUM_POINTS = 468
ROI_SCALE = 1.5
# Faces per forward pass. PyTorch executor, 2-core dev VM, 6 faces (median ms, 1/2 threads):
# 48/44 one by one, 37/33 in pairs, 33/31 in threes, 54/40 all at once (caches overflow).
# LiteRT: per face 3.0 ms alone, 2.0 in threes, 1.9 in eights (flat from 3 on), so up to 8.
BATCH = 3
LITERT_BATCH = 8

# Canonical-mesh indices. "Right"/"left" are the subject's: the subject's right eye is the
# one with the smaller x in an upright, unmirrored face, i.e. LANDMARK_NAMES' eye_1.
RIGHT_EYE_CONTOUR = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173)
LEFT_EYE_CONTOUR = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)
NOSE_TIP = 1
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263  # MediaPipe's rotation reference for mesh ROIs


@dataclass(frozen=True)
class Roi:
    """A rotated square in frame pixels: centre, side length, rotation (radians, clockwise
    in image coordinates = the angle that levels the face)."""

    cx: float
    cy: float
    size: float
    angle: float

    def crop_matrix(self, out_size: int = INPUT_SIZE) -> np.ndarray:
        """2x3 affine mapping crop pixel centres -> frame pixel centres (for WARP_INVERSE_MAP)."""
        s = self.size / out_size
        c, si = np.cos(self.angle), np.sin(self.angle)
        rot = np.array([[c, -si], [si, c]]) * s
        half = (out_size - 1) / 2
        shift = np.array([self.cx, self.cy]) - rot @ np.array([half, half])
        return np.hstack([rot, shift[:, None]])

    def to_frame(self, points_crop: np.ndarray, out_size: int = INPUT_SIZE) -> np.ndarray:
        """Model outputs (x, y[, z]) in crop pixels (continuous, 0..out_size) -> frame pixel centres."""
        scale = self.size / out_size
        c, si = np.cos(self.angle), np.sin(self.angle)
        u = points_crop[:, 0] * scale - self.size / 2
        v = points_crop[:, 1] * scale - self.size / 2
        out = np.empty_like(points_crop, dtype=np.float32)
        out[:, 0] = self.cx + c * u - si * v
        out[:, 1] = self.cy + si * u + c * v
        if points_crop.shape[1] > 2:
            out[:, 2:] = points_crop[:, 2:] * scale
        return out


def _normalize_angle(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def level_angle(start: np.ndarray, end: np.ndarray) -> float:
    """Rotation that turns the vector start -> end horizontal (MediaPipe's target_angle 0)."""
    return _normalize_angle(float(np.arctan2(end[1] - start[1], end[0] - start[0])))


def roi_from_box(box: np.ndarray, start: np.ndarray, end: np.ndarray, scale: float = ROI_SCALE) -> Roi:
    """Square ROI around an axis-aligned box, rotated by the start -> end keypoint direction."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return Roi((x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * scale, level_angle(start, end))


def roi_from_detection(box: np.ndarray, keypoints: np.ndarray) -> Roi:
    """MediaPipe's detection -> mesh ROI (keypoints 0 and 1 are the eyes)."""
    return roi_from_box(box, keypoints[0], keypoints[1])


def roi_from_mesh(points: np.ndarray) -> Roi:
    """MediaPipe's mesh -> next-frame ROI: box around all points, eye corners for the angle."""
    xy = points[:, :2]
    box = np.concatenate([xy.min(axis=0), xy.max(axis=0)])
    return roi_from_box(box, xy[RIGHT_EYE_OUTER], xy[LEFT_EYE_OUTER])


def five_points(points: np.ndarray) -> np.ndarray:
    """(5, 2) float32 in LANDMARK_NAMES order: eye centres, nose tip, mouth corners."""
    xy = points[:, :2]
    return np.stack([
        xy[list(RIGHT_EYE_CONTOUR)].mean(axis=0),
        xy[list(LEFT_EYE_CONTOUR)].mean(axis=0),
        xy[NOSE_TIP],
        xy[MOUTH_RIGHT],
        xy[MOUTH_LEFT],
    ]).astype(np.float32)


@dataclass(frozen=True)
class MeshResult:
    points: np.ndarray  # (468, 3) float32, frame pixel centres; z in the same pixel scale
    presence: float  # face-presence probability in [0, 1]
    roi: Roi


class FaceMesh:
    """run(frame, rois) -> one MeshResult per ROI, all ROIs in one batched forward pass."""

    def __init__(self, engine: str = "auto"):
        self.model = load_tflite_model(tflite_model_path(MODEL_FILE), engine)
        self.batch = LITERT_BATCH if isinstance(self.model, LiteRTGraph) else BATCH
        self._points_output = self.model.output_names.index("conv2d_20")
        self._presence_output = self.model.output_names.index("conv2d_30")

    def crops(self, image_bgr: np.ndarray, rois: list[Roi]) -> np.ndarray:
        """(N, 192, 192, 3) uint8 RGB crops (BORDER_REPLICATE, as MediaPipe's landmark graph)."""
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        out = np.empty((len(rois), INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        for i, roi in enumerate(rois):
            crop = cv2.warpAffine(image_bgr, roi.crop_matrix(), (INPUT_SIZE, INPUT_SIZE), flags=flags,
                                  borderMode=cv2.BORDER_REPLICATE)
            bgr_to_rgb(crop, out=out[i])
        return out

    def run(self, image_bgr: np.ndarray, rois: list[Roi]) -> list[MeshResult]:
        if not rois:
            return []
        crops = self.crops(image_bgr, rois)
        points, logits = [], []
        for start in range(0, len(crops), self.batch):
            batch = crops[start:start + self.batch]
            outputs = self.model(to_unit(batch))
            points.append(outputs[self._points_output].reshape(len(batch), NUM_POINTS, 3))
            logits.append(outputs[self._presence_output].reshape(len(batch)))
        presence = 1.0 / (1.0 + np.exp(-np.clip(np.concatenate(logits).astype(np.float64), -100, 100)))
        return [MeshResult(roi.to_frame(p), float(s), roi) for p, s, roi in zip(np.concatenate(points), presence, rois)]
