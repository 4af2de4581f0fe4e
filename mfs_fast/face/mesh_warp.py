"""A classical face swap: the source's face mesh warped onto the target's, in aligned crops.

Every triangle of the 468-point face mesh (one fixed triangulation) is mapped affinely from the
source crop onto the same triangle of the target crop, the warped face is colour-matched to the
target's face (per-channel mean and spread in CIE Lab inside the hull) and blended in with a
feathered hull mask. Identity (texture, proportions inside the face) comes from the source,
pose and expression (where the mesh points are) from the target, with the artefacts of a 2D
warp (a closed mouth stretched over an open one, lighting baked into the texture). It needs no
learned weights, which makes it the training teacher (:mod:`mfs_fast.train.warp_teacher`) and
an evaluation baseline (``mfs-fast eval --methods mesh-warp``).
"""

from __future__ import annotations

import cv2
import numpy as np

from .types import Face

FEATHER_SIGMA = 3.0  # Gaussian blur of the blend mask (pixels at 224)
ERODE = 5  # the hull is shrunk this much before feathering: its edge is jawline and forehead


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T x 3 point indices) of a mesh shape, degenerate ones dropped."""
    from scipy.spatial import Delaunay

    triangles = Delaunay(points).simplices.astype(np.int64)
    a, b, c = (points[triangles[:, k]] for k in range(3))
    area = np.abs((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]) / 2
    return triangles[area > 1e-3]


def warp_maps(source_points: np.ndarray, target_points: np.ndarray, triangles: np.ndarray,
              size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per target pixel, where to sample the source (map_x, map_y) and whether a triangle covers it."""
    index = np.full((size, size), -1, np.int32)
    for t, tri in enumerate(triangles):
        cv2.fillConvexPoly(index, np.round(target_points[tri] * 16).astype(np.int32), int(t), shift=4)
    # per triangle, the affine map target -> source: S = M @ [T; 1]
    dst = np.concatenate([target_points[triangles], np.ones((len(triangles), 3, 1))], axis=2)  # T x 3 x 3
    src = source_points[triangles]  # T x 3 x 2
    det = np.linalg.det(dst)
    good = np.abs(det) > 1e-6
    matrices = np.zeros((len(triangles), 3, 2))
    matrices[good] = np.linalg.solve(dst[good], src[good])
    covered = index >= 0
    covered[covered] = good[index[covered]]
    ys, xs = np.nonzero(covered)
    m = matrices[index[ys, xs]]  # K x 3 x 2
    map_x = np.zeros((size, size), np.float32)
    map_y = np.zeros((size, size), np.float32)
    map_x[ys, xs] = xs * m[:, 0, 0] + ys * m[:, 1, 0] + m[:, 2, 0]
    map_y[ys, xs] = xs * m[:, 0, 1] + ys * m[:, 1, 1] + m[:, 2, 1]
    return map_x, map_y, covered


def match_colour(warped: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Per-channel mean and standard deviation (in CIE Lab, where lightness and tint separate)
    of RGB ``warped`` moved to ``target``'s inside ``region``."""
    if region.sum() < 16:
        return warped
    warped_lab = cv2.cvtColor(warped.astype(np.float32), cv2.COLOR_RGB2Lab)
    target_lab = cv2.cvtColor(target.astype(np.float32), cv2.COLOR_RGB2Lab)
    w, t = warped_lab[region], target_lab[region]
    scale = np.clip(t.std(axis=0) / np.maximum(w.std(axis=0), 1e-3), 0.5, 2.0)
    moved = (warped_lab - w.mean(axis=0)) * scale + t.mean(axis=0)
    return np.clip(cv2.cvtColor(moved.astype(np.float32), cv2.COLOR_Lab2RGB), 0.0, 1.0)


def mesh_warp_swap(source: np.ndarray, target: np.ndarray, source_points: np.ndarray, target_points: np.ndarray,
                   triangles: np.ndarray) -> np.ndarray:
    """One swap, H x W x 3 float arrays in [0, 1]: the source face warped, colour-matched, blended."""
    size = target.shape[0]
    map_x, map_y, covered = warp_maps(source_points, target_points, triangles, size)
    warped = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    region = cv2.erode(covered.astype(np.uint8), np.ones((ERODE, ERODE), np.uint8)) > 0
    warped = match_colour(warped, target, region)
    alpha = cv2.GaussianBlur(region.astype(np.float32), (0, 0), FEATHER_SIGMA)[..., None]
    return warped * alpha + target * (1.0 - alpha)


def crop_mesh_points(frame: np.ndarray, face: Face, matrix: np.ndarray, mesh) -> np.ndarray:
    """The 468 face-mesh points (x, y) of ``face``, mapped into crop coordinates by ``matrix``."""
    from .face_mesh import roi_from_detection

    points = mesh.run(frame, [roi_from_detection(face.box, face.landmarks)])[0].points[:, :2]
    return (np.hstack([points, np.ones((len(points), 1))]) @ matrix.T).astype(np.float32)


def hull_mask(points: np.ndarray, size: int) -> np.ndarray:
    """uint8 size x size mask (255 = face): the convex hull of the mesh points."""
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points.astype(np.int32)), 255)
    return mask
