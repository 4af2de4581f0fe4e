"""Where the result's features sit against the target's: a loss through MediaPipe's face mesh.

Why: the teacher and the identity losses decide what the face looks like, nothing decides
where its nose tip, mouth corners, lips and lids are, and those are the head's pose and the
expression the swap must keep. The mesh (the project's PyTorch executor with plain
convolutions, so the gradient reaches the pixels) is run on the result and on the target over
the same rotated square, the one MediaPipe would take from the target's own mesh; comparing the
two runs cancels the mesh's bias on this crop. The mean point distance over a few points is
divided by the target's eye distance.

The evaluation measures pose and expression with the same mesh (eval/pose.py from its five
points, eval/expression.py from its lips and lids), so what this loss gains there is reported
beside a check that does not use the mesh (the model card says which).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..face.face_mesh import (INPUT_SIZE, LEFT_EYE_CONTOUR, LEFT_EYE_OUTER, MOUTH_LEFT, MOUTH_RIGHT, NOSE_TIP, NUM_POINTS,
                              RIGHT_EYE_CONTOUR, RIGHT_EYE_OUTER, ROI_SCALE)
from ..face.model_files import tflite_model_path
from ..face.tflite_graph import load_tflite_graph

# nose tip and bridge, mouth corners, outer and inner lip middles: pose (with the eye centres)
# and the mouth's expression; the eye centres and lids come from the contours below
FEATURE_POINTS = (NOSE_TIP, 4, 5, 195, MOUTH_RIGHT, MOUTH_LEFT, 0, 17, 13, 14)
EYELIDS = (159, 145, 386, 374)
POINTS_OUTPUT = "conv2d_20"


def rois_from_points(points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """MediaPipe's ROI of each mesh (N x 468 x 2): centre (N x 2), side (N), angle (N), as
    face_mesh.roi_from_mesh (box around all points, eye corners level), kept upright."""
    low, high = points.amin(dim=1), points.amax(dim=1)
    centre = (low + high) / 2
    side = (high - low).amax(dim=1) * ROI_SCALE
    eyes = points[:, LEFT_EYE_OUTER] - points[:, RIGHT_EYE_OUTER]
    eyes = torch.where(eyes[:, :1] < 0, -eyes, eyes)  # a flipped crop's mesh labels the eyes the other way round
    angle = torch.atan2(eyes[:, 1], eyes[:, 0])
    return centre, side, angle


def _rotation(angle: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # N x 2 x 2


def roi_crops(images: Tensor, centre: Tensor, side: Tensor, angle: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """The rotated squares resampled to size x size (bilinear, border replicated), as
    FaceMesh.crops does with cv2.warpAffine; differentiable in ``images``."""
    n, _, height, width = images.shape
    half = (size - 1) / 2
    grid = torch.arange(size, dtype=images.dtype, device=images.device) - half
    v, u = torch.meshgrid(grid, grid, indexing="ij")
    offsets = torch.stack([u, v], -1).reshape(1, -1, 2) * (side / size)[:, None, None]  # N x P x 2
    frame = centre[:, None, :] + offsets @ _rotation(angle).transpose(1, 2)
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=images.dtype, device=images.device)
    normalised = (frame + 0.5) * scale - 1.0  # pixel centres, align_corners=False
    return F.grid_sample(images, normalised.reshape(n, size, size, 2), mode="bilinear", padding_mode="border",
                         align_corners=False)


def crop_to_frame(points: Tensor, centre: Tensor, side: Tensor, angle: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """Mesh outputs (N x P x 2, crop pixels 0..size) -> image pixel centres (face_mesh.Roi.to_frame)."""
    local = points * (side / size)[:, None, None] - (side / 2)[:, None, None]
    return centre[:, None, :] + local @ _rotation(angle).transpose(1, 2)


def _landmarks(points: Tensor) -> Tensor:
    """The compared points: FEATURE_POINTS, both eye centres (contour means), the eyelids."""
    eyes = torch.stack([points[:, list(RIGHT_EYE_CONTOUR)].mean(1), points[:, list(LEFT_EYE_CONTOUR)].mean(1)], 1)
    return torch.cat([points[:, list(FEATURE_POINTS)], eyes, points[:, list(EYELIDS)]], 1)


class MeshGeometryLoss(nn.Module):
    """forward(result, target, target_points) -> per-sample mean landmark distance / eye distance.

    result, target: N x 3 x S x S RGB in [0, 1]; target_points: N x 468 x 2 mesh points of the
    target in the same crop's pixels (the cache's, after augmentation)."""

    def __init__(self) -> None:
        super().__init__()
        self.mesh = load_tflite_graph(tflite_model_path("face_landmark.tflite"), prepacked=False)
        self._points = self.mesh.output_names.index(POINTS_OUTPUT)

    def points(self, images: Tensor, centre: Tensor, side: Tensor, angle: Tensor) -> Tensor:
        """468 x 2 mesh points per image in its own pixels, the mesh run on the given squares."""
        crops = roi_crops(images.float(), centre, side, angle)
        raw = self.mesh(crops)[self._points].reshape(len(images), NUM_POINTS, 3)[..., :2]
        return crop_to_frame(raw, centre, side, angle)

    def forward(self, result: Tensor, target: Tensor, target_points: Tensor) -> Tensor:
        roi = rois_from_points(target_points.float())
        with torch.no_grad():
            wanted = _landmarks(self.points(target, *roi))
        got = _landmarks(self.points(result, *roi))
        eye_distance = (wanted[:, -6] - wanted[:, -5]).norm(dim=-1).clamp_min(1.0)  # the eye centres
        return (got - wanted).norm(dim=-1).mean(dim=1) / eye_distance
