"""The geometry loss (train/geometry.py): the mesh it runs is the one FaceMesh runs, its crops and
point mapping are FaceMesh's, and its gradient moves the features toward the target's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from conftest import _astronaut_bgr
from mfs_fast.face.face_mesh import FaceMesh, roi_from_mesh
from mfs_fast.train.data import FaceCache, build_cache
from mfs_fast.train.geometry import MeshGeometryLoss, rois_from_points


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> FaceCache:
    folder = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(folder / "a.jpg"), _astronaut_bgr())
    return FaceCache(build_cache([str(folder)], tmp_path_factory.mktemp("cache")),
                     seed=int(np.random.default_rng().integers(1 << 30)))


@pytest.fixture(scope="module")
def loss() -> MeshGeometryLoss:
    return MeshGeometryLoss()


def _bgr8(image: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray((image.permute(1, 2, 0).numpy()[..., ::-1] * 255).round().astype(np.uint8))


def test_points_are_facemesh_points_on_the_same_square(cache, loss):
    """On an unflipped augmented crop, the torch crop + mesh + mapping give FaceMesh's points
    (OpenCV warp, prepacked graph) within 0.5 px."""
    mesh = FaceMesh(engine="torch")
    for _ in range(4):
        sample = cache.sample(0)
        points = sample.points[None]
        roi = rois_from_points(points)
        if abs(float(roi[2][0])) > 1.0:
            continue  # never: the ROI is kept upright
        image8 = _bgr8(sample.image)
        unit = torch.from_numpy(image8[..., ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()
        got = loss.points(unit, *roi)[0].numpy()
        upright = roi_from_mesh(sample.points.numpy())
        if abs(upright.angle) < 1.0:  # FaceMesh's own ROI is upside down on a flipped crop's labels
            expected = mesh.run(image8, [upright])[0].points[:, :2]
            assert np.abs(got - expected).max() < 0.5


def test_the_square_stays_upright_on_flipped_crops(cache, loss):
    """A flipped crop's mesh labels the eyes the other way round; the ROI must not turn over,
    so the mesh finds the face where the cache says it is: the midline points of nose and lips
    (the same labels on a mirrored face) within 5 % of the crop (the cache's come from the whole
    photo: 2-9 px off on the astronaut either way; an upside-down square puts them ~50 px off)."""
    for _ in range(12):
        sample = cache.sample(0)
        roi = rois_from_points(sample.points[None])
        assert abs(float(roi[2][0])) < 0.5
        found = loss.points(sample.image[None], *roi)[0]
        midline = [1, 4, 5, 195, 0, 13, 14, 17]
        assert float((found[midline] - sample.points[midline]).norm(dim=1).max()) < 0.05 * 224


def test_zero_on_the_target_more_for_a_moved_face_and_the_gradient_pulls_back(cache, loss):
    sample = cache.sample(0, augment=False)
    target, points = sample.image[None], sample.points[None]
    assert float(loss(target, target, points)[0]) == 0.0
    shift = int(np.random.default_rng().integers(4, 9))
    moved = torch.roll(target, shift, dims=2).requires_grad_(True)  # every feature `shift` px lower
    value = loss(moved, target, points)[0]
    eye_distance = 0.36 * 224  # about the template's
    assert 0.5 * shift / eye_distance < float(value) < 2.0 * shift / eye_distance
    value.backward()
    assert moved.grad is not None and float(moved.grad.abs().sum()) > 0
    stepped = (moved - 0.5 * moved.grad / moved.grad.abs().max()).detach().clamp(0, 1)
    assert float(loss(stepped, target, points)[0]) < float(value)
