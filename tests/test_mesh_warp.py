"""The mesh-warp teacher and what it needs from the cache: mesh points that follow augmentation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from conftest import _astronaut_bgr
from mfs_fast.face.mesh_warp import hull_mask, match_colour, triangulate, warp_maps
from mfs_fast.train.data import FaceCache, build_cache
from mfs_fast.train.teacher import create_teacher


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> FaceCache:
    """Two photos: the astronaut and a mirrored, shifted, rescaled copy of her (other pose)."""
    folder = tmp_path_factory.mktemp("photos")
    image = _astronaut_bgr()
    cv2.imwrite(str(folder / "a.jpg"), image)
    cv2.imwrite(str(folder / "b.jpg"), cv2.resize(cv2.flip(image, 1)[30:480, 40:470], (400, 420)))
    return FaceCache(build_cache([str(folder)], tmp_path_factory.mktemp("cache")), seed=int(np.random.default_rng().integers(1 << 30)))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_cache_points_are_the_mesh_in_crop_coordinates(cache):
    assert cache.points.shape == (len(cache), 468, 2)
    for i in range(len(cache)):
        _, mask = cache.raw(i)
        assert _iou(hull_mask(cache.points[i], 224) > 127, mask > 127) > 0.98


def test_augmented_points_follow_the_crop(cache):
    """Flip and affine move the points with the pixels: their hull matches the augmented mask."""
    for _ in range(8):
        sample = cache.sample(0)
        warped_hull = hull_mask(sample.points.numpy(), 224) > 127
        assert _iou(warped_hull, sample.face_mask[0].numpy() > 0.5) > 0.95


def test_triangulation_covers_the_hull_without_degenerate_triangles(cache):
    mean = cache.mean_points()
    triangles = triangulate(mean)
    assert triangles.shape[1] == 3 and len(triangles) > 800
    _, _, covered = warp_maps(mean, mean, triangles, 224)
    assert _iou(covered, hull_mask(mean, 224) > 127) > 0.97


def test_warp_maps_follow_a_known_affine_motion(cache):
    """Target points = source points moved by a known similarity: every covered pixel samples
    the source where that motion's inverse says (to a hundredth of a pixel)."""
    source_points = cache.points[0].astype(np.float64)
    angle = np.random.default_rng().uniform(-10, 10)
    motion = cv2.getRotationMatrix2D((112.0, 112.0), angle, 0.9)
    target_points = source_points @ motion[:, :2].T + motion[:, 2]
    map_x, map_y, covered = warp_maps(source_points, target_points, triangulate(cache.mean_points()), 224)
    inverse = cv2.invertAffineTransform(motion)
    ys, xs = np.nonzero(covered)
    expected = np.stack([xs, ys, np.ones_like(xs)], axis=1) @ inverse.T
    assert covered.sum() > 5000
    assert np.abs(map_x[ys, xs] - expected[:, 0]).max() < 0.01 and np.abs(map_y[ys, xs] - expected[:, 1]).max() < 0.01


def test_colour_matching_moves_the_statistics_inside_the_region():
    rng = np.random.default_rng()
    warped = np.clip(rng.normal(0.3, 0.05, size=(64, 64, 3)), 0, 1).astype(np.float32)
    target = np.clip(rng.normal(0.6, 0.08, size=(64, 64, 3)), 0, 1).astype(np.float32)
    region = np.zeros((64, 64), bool)
    region[16:48, 16:48] = True
    moved = match_colour(warped, target, region)
    assert np.abs(moved[region].mean(axis=0) - target[region].mean(axis=0)).max() < 0.03


def test_teacher_swaps_inside_the_face_and_keeps_the_background(cache):
    """Source onto another crop: the face region changes, the corners (far outside the hull)
    are the target's exactly; a source onto itself gives (nearly) itself back."""
    teacher = create_teacher({"kind": "mesh-warp"}, cache.mean_points())
    assert teacher.needs_points
    source, target = cache.sample(0, augment=False), cache.sample(1)
    out = teacher(source.image, target.image[None], source.points, target.points[None])[0]
    face = target.face_mask[0] > 0.5
    assert out.shape == target.image.shape
    changed = (out - target.image).abs().amax(0)
    assert float(changed[face].mean()) > 0.02
    assert float(changed[:20, :20].max()) == 0.0 and float(changed[-20:, -20:].max()) == 0.0
    same = teacher(source.image, source.image[None], source.points, source.points[None])[0]
    assert float((same - source.image).abs()[:, source.face_mask[0] > 0.5].mean()) < 0.03


def test_teacher_without_points_is_a_clear_error(cache):
    from mfs_fast.errors import MfsError

    teacher = create_teacher({"kind": "mesh-warp"}, cache.mean_points())
    with pytest.raises(MfsError, match="needs the mesh points"):
        teacher(torch.rand(3, 224, 224), torch.rand(1, 3, 224, 224))
    with pytest.raises(MfsError, match="average mesh"):
        create_teacher({"kind": "mesh-warp"})

