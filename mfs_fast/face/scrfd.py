"""A user-supplied SCRFD ONNX file (insightface's detector family) as a FaceDetector.

SCRFD files cannot be obtained offline here, so this detector is opt-in: pass the path of
e.g. ``det_10g.onnx`` as ``create_detector("path/to/det_10g.onnx")`` or ``--detector``, or set
``MFS_FAST_SCRFD_MODEL`` to it and ask for ``"scrfd"`` by name.
Layout handled: 9 outputs (scores, box distances, keypoint offsets for strides 8/16/32,
2 anchors per cell), input RGB (x - 127.5) / 128, letterboxed at the top left.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import MfsError
from ..media import check_bgr_image
from .types import Face

MODEL_ENV = "MFS_FAST_SCRFD_MODEL"
STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        overlap = inter / (areas[best] + areas[rest] - inter + 1e-9)
        order = rest[overlap <= iou]
    return keep


def anchor_centres(height: int, width: int, stride: int) -> np.ndarray:
    """(x, y) of each anchor, row-major over the stride grid, each repeated per anchor."""
    ys, xs = np.mgrid[: height // stride, : width // stride]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, ANCHORS_PER_CELL, axis=0)


class SCRFDDetector:
    """SCRFD face detector run by ONNX Runtime; 5 landmarks in ArcFace order."""

    name = "scrfd"

    def __init__(self, model_path: str | Path | None = None, min_score: float = 0.5, nms_iou: float = 0.4,
                 input_size: int = 640, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MfsError("the SCRFD detector needs onnxruntime: pip install onnxruntime") from None
        if model_path is None and not os.environ.get(MODEL_ENV):
            raise MfsError(f"the scrfd detector needs an SCRFD .onnx model file (e.g. insightface's det_10g.onnx), "
                           f"which is not bundled: pass its path as --detector PATH.onnx, or set {MODEL_ENV}=PATH")
        path = Path(model_path if model_path is not None else os.environ[MODEL_ENV])
        if not path.is_file():
            named_by = f" (named by {MODEL_ENV})" if model_path is None else ""
            raise MfsError(f"SCRFD model not found: {path}{named_by}; give the path of an SCRFD .onnx file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise MfsError(f"cannot load {path} as an ONNX model: {error}") from None
        if len(self.session.get_outputs()) != 3 * len(STRIDES):
            raise MfsError(f"{path} has {len(self.session.get_outputs())} outputs; an SCRFD file with landmarks "
                           f"has {3 * len(STRIDES)} (scores, boxes, keypoints for strides {STRIDES})")
        self.input_name = self.session.get_inputs()[0].name
        self.min_score, self.nms_iou, self.size = min_score, nms_iou, input_size

    @staticmethod
    def unavailable_reason() -> str | None:
        """Why no SCRFD file can run here (onnxruntime missing), else None; cheap: nothing is imported."""
        return None if importlib.util.find_spec("onnxruntime") else "the SCRFD detector needs onnxruntime: pip install onnxruntime"

    @staticmethod
    def needs() -> str:
        """What this detector needs to run here, in words (for ``mfs-fast doctor``)."""
        configured = os.environ.get(MODEL_ENV)
        where = f"{MODEL_ENV}={configured}" + ("" if Path(configured).is_file() else " (missing)") \
            if configured else f"{MODEL_ENV} not set"
        return f"needs an SCRFD .onnx model file: --detector PATH.onnx, or set {MODEL_ENV} ({where})"

    def _blob(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        scale = self.size / max(image.shape[:2])
        h, w = round(image.shape[0] * scale), round(image.shape[1] * scale)
        canvas = np.zeros((self.size, self.size, 3), np.uint8)
        canvas[:h, :w] = cv2.resize(image, (w, h))
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / 128, (self.size, self.size), (127.5, 127.5, 127.5), swapRB=True)
        return blob, scale

    def detect(self, image: np.ndarray) -> list[Face]:
        check_bgr_image(image, "a face-detection input")
        blob, scale = self._blob(image)
        outputs = [o.reshape(-1, o.shape[-1]) for o in self.session.run(None, {self.input_name: blob})]
        n = len(STRIDES)
        boxes, scores, points = [], [], []
        for i, stride in enumerate(STRIDES):
            score, distance, offsets = outputs[i][:, 0], outputs[i + n] * stride, outputs[i + 2 * n] * stride
            centres = anchor_centres(self.size, self.size, stride)
            keep = score >= self.min_score
            c = centres[keep]
            d = distance[keep]
            boxes.append(np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1))
            points.append(offsets[keep].reshape(-1, 5, 2) + c[:, None, :])
            scores.append(score[keep])
        boxes_all, scores_all, points_all = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
        return [
            Face((boxes_all[k] / scale).astype(np.float32), float(scores_all[k]), (points_all[k] / scale).astype(np.float32))
            for k in nms(boxes_all, scores_all, self.nms_iou)
        ]
