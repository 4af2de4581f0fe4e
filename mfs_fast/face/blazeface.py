"""MediaPipe's full-range BlazeFace: face boxes and 6 coarse keypoints in a BGR frame.

Pre- and post-processing follow MediaPipe's full-range face detection graph
(face_detection_full_range.pbtxt and its *_common subgraph): the frame is letterboxed to
192x192 and scaled to [-1, 1]; one SSD anchor per cell of a 48x48 grid (stride 4, fixed
anchor size 1); box and keypoint offsets are in input pixels around the anchor centre;
scores are sigmoid(clip(logit, +-100)); overlapping boxes are merged by MediaPipe's
WEIGHTED non-maximum suppression (IoU > 0.3, score-weighted average of every box it
suppresses). Keypoints, in MediaPipe's order: the eye on the image's left in an upright
face, the other eye, nose tip, mouth centre, and the two eye tragions (ear points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .model_files import tflite_model_path
from .tflite_engine import load_tflite_model

MODEL_FILE = "face_detection_full_range.tflite"
INPUT_SIZE = 192
NUM_KEYPOINTS = 6
SCORE_CLIP = 100.0  # score_clipping_thresh
DEFAULT_MIN_SCORE = 0.5  # MediaPipe's usual min_score_thresh (its tfjs full-range config says 0.6)
DEFAULT_NMS_IOU = 0.3  # min_suppression_threshold
# images per forward pass: a 1080p frame's tiles fit in one; a 108-megapixel photo's ~340 tiles in
# one pass took a 1.1 GB batch interpreter, kept for reuse (LiteRT keeps one per batch size)
MAX_BATCH = 8


@dataclass(frozen=True)
class Detection:
    """One BlazeFace detection in frame pixels (pixel centres at integer coordinates)."""

    box: np.ndarray  # (4,) float32 x1, y1, x2, y2
    keypoints: np.ndarray  # (6, 2) float32
    score: float


def ssd_anchor_centres(input_size: int = INPUT_SIZE, strides: tuple[int, ...] = (4,),
                       anchors_per_cell: int = 1, offset: float = 0.5) -> np.ndarray:
    """(N, 2) anchor centres (x, y) in [0, 1], in the model's output order (row-major cells).

    MediaPipe's SsdAnchorsCalculator with fixed_anchor_size reduces to this for the
    full-range options (one layer, stride 4, aspect ratio 1, no interpolated scale):
    48 x 48 cells x 1 anchor = 2304, all of size 1 x 1.
    """
    centres = []
    for stride in strides:
        cells = -(-input_size // stride)
        ys, xs = np.meshgrid((np.arange(cells) + offset) / cells, (np.arange(cells) + offset) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, anchors_per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


@dataclass(frozen=True)
class Letterbox:
    """How the frame was fitted into the square input: input = frame * scale + offset."""

    scale_x: float
    scale_y: float
    offset_x: int
    offset_y: int

    def to_frame(self, points_input: np.ndarray) -> np.ndarray:
        """Input-pixel coordinates (continuous, 0..INPUT_SIZE) -> frame pixel-centre coordinates."""
        out = np.empty_like(points_input)
        out[..., 0] = (points_input[..., 0] - self.offset_x) / self.scale_x - 0.5
        out[..., 1] = (points_input[..., 1] - self.offset_y) / self.scale_y - 0.5
        return out


def _shrink(image_bgr: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    """The image at new_w x new_h (H x W x 3 uint8, BGR): an antialiased bilinear resize
    (torch's uint8 kernel: ~0.5 ms for a 1280x720 frame, where cv2's INTER_AREA takes ~3 ms);
    plain bilinear would alias away the small faces the full-range model is for."""
    if (new_h, new_w) == tuple(image_bgr.shape[:2]):
        return image_bgr
    frame = torch.from_numpy(np.ascontiguousarray(image_bgr)).permute(2, 0, 1).unsqueeze(0)
    resized = F.interpolate(frame, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    return resized[0].permute(1, 2, 0).numpy()


def shrink(image_bgr: np.ndarray, scale: float) -> np.ndarray:
    """The BGR image resized by ``scale`` (< 1) as letterbox() shrinks frames (H' x W' x 3 uint8)."""
    h, w = image_bgr.shape[:2]
    return _shrink(image_bgr, max(1, round(w * scale)), max(1, round(h * scale)))


def letterbox(image_bgr: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, Letterbox]:
    """Fit the frame into size x size keeping its aspect ratio, centred on black borders.

    Returns a size x size x 3 uint8 RGB array; a frame that already fits is only copied.
    """
    h, w = image_bgr.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.zeros((size, size, 3), np.uint8)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas[top:top + new_h, left:left + new_w] = _shrink(image_bgr, new_w, new_h)[..., ::-1]  # BGR -> RGB
    return canvas, Letterbox(new_w / w, new_h / h, left, top)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED suppression: each kept detection is the score-weighted mean of
    itself and every lower-scored box overlapping it by IoU > threshold; it keeps its own score.
    boxes: (N, 4) x1, y1, x2, y2; keypoints: (N, K, 2); scores: (N,)."""
    order = np.argsort(-scores, kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    kept = []
    while order.size:
        top = order[0]
        ix1 = np.maximum(boxes[top, 0], boxes[order, 0])
        iy1 = np.maximum(boxes[top, 1], boxes[order, 1])
        ix2 = np.minimum(boxes[top, 2], boxes[order, 2])
        iy2 = np.minimum(boxes[top, 3], boxes[order, 3])
        inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
        union = areas[top] + areas[order] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        group = order[iou > iou_threshold]
        if group.size == 0:  # degenerate (empty) box: keep it alone
            group = order[:1]
        weights = scores[group] / scores[group].sum()
        kept.append((weights @ boxes[group], np.tensordot(weights, keypoints[group], axes=1), float(scores[top])))
        order = order[~np.isin(order, group)]
    return kept


class BlazeFace:
    """The full-range detector: detect(frame) -> list[Detection], best score first; detect_many
    for several images at once."""

    def __init__(self, min_score: float = DEFAULT_MIN_SCORE, nms_iou: float = DEFAULT_NMS_IOU, engine: str = "auto"):
        self.min_score, self.nms_iou = float(min_score), float(nms_iou)
        self.model = load_tflite_model(tflite_model_path(MODEL_FILE), engine)
        self.anchors = ssd_anchor_centres()
        # Score threshold as a logit: sigmoid is monotonic, so candidates are picked without
        # computing 2304 sigmoids.
        p = min(max(self.min_score, 1e-6), 1 - 1e-6)
        self._min_logit = float(np.log(p / (1 - p)))

    def input_batch(self, images_bgr: list[np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        """(N, 192, 192, 3) float32 NHWC batch in [-1, 1] and the images' letterboxes."""
        fitted = [letterbox(image) for image in images_bgr]
        batch = np.stack([canvas for canvas, _ in fitted]).astype(np.float32)
        batch *= 1 / 127.5
        batch -= 1.0
        return batch, [box for _, box in fitted]

    def raw_outputs(self, images_bgr: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[Letterbox]]:
        """Model outputs (N, 2304, 16) regressors and (N, 2304) score logits, and the letterboxes:
        all images in one forward pass."""
        x, boxes = self.input_batch(images_bgr)
        outputs = dict(zip(self.model.output_names, self.model(x)))
        # LiteRT with a batch > 1 returns (1, N * 2304, ...): the images one after another
        regressors = outputs["reshaped_regressor_face_4"].reshape(len(boxes), -1, 16)
        logits = outputs["reshaped_classifier_face_4"].reshape(len(boxes), -1)
        return regressors, logits, boxes

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """All faces scoring at least min_score, best first, in frame pixel coordinates."""
        return self.detect_many([image_bgr])[0]

    def detect_many(self, images_bgr: list[np.ndarray]) -> list[list[Detection]]:
        """detect() for several images (e.g. tiles of one frame) in batched forward passes of at
        most MAX_BATCH images, so memory stays bounded however many tiles a huge photo has."""
        found = []
        for start in range(0, len(images_bgr), MAX_BATCH):
            regressors, logits, boxes = self.raw_outputs(images_bgr[start:start + MAX_BATCH])
            found += [self._decode(r, l, box) for r, l, box in zip(regressors, logits, boxes)]
        return found

    def _decode(self, regressors: np.ndarray, logits: np.ndarray, box: Letterbox) -> list[Detection]:
        """One image's outputs -> detections above min_score, merged, in frame pixels."""
        candidates = np.flatnonzero(logits >= self._min_logit)
        if candidates.size == 0:
            return []
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[candidates], -SCORE_CLIP, SCORE_CLIP)))
        reg = regressors[candidates] / INPUT_SIZE  # offsets in units of the input size
        centres = self.anchors[candidates]
        xy = reg[:, :2] + centres
        half = reg[:, 2:4] / 2
        boxes = np.concatenate([xy - half, xy + half], axis=1)
        keypoints = reg[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + centres[:, None, :]
        detections = []
        for merged_box, merged_keypoints, score in weighted_nms(boxes, keypoints, scores, self.nms_iou):
            corners = box.to_frame(merged_box.reshape(2, 2) * INPUT_SIZE).reshape(4)
            points = box.to_frame(merged_keypoints * INPUT_SIZE)
            detections.append(Detection(corners.astype(np.float32), points.astype(np.float32), score))
        return detections
