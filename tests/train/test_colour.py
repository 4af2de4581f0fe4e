"""The training colour loss is the evaluation's colour shift, made differentiable."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mfs_fast.eval.appearance import colour_shift, region_masks
from mfs_fast.face.face_mesh import (LEFT_EYE_CONTOUR, MOUTH_LEFT, MOUTH_RIGHT, NOSE_TIP, RIGHT_EYE_CONTOUR,
                                     five_points)
from mfs_fast.train.colour import colour_regions, colour_shift_loss, rgb_to_lab

SIZE = 96


def _mesh_points(rng: np.random.Generator) -> np.ndarray:
    """468 points whose five-point summary is a plausible, jittered face in a SIZE crop."""
    points = np.full((468, 2), 0.5 * SIZE, np.float32)
    places = ((RIGHT_EYE_CONTOUR, (0.35, 0.4)), (LEFT_EYE_CONTOUR, (0.65, 0.4)), ((NOSE_TIP,), (0.5, 0.55)),
              ((MOUTH_RIGHT,), (0.38, 0.72)), ((MOUTH_LEFT,), (0.62, 0.72)))
    for indices, (x, y) in places:
        points[list(indices)] = np.array([x, y]) * SIZE + rng.normal(0, 1.5, 2)
    return points


def test_lab_matches_opencv_on_random_colours():
    rng = np.random.default_rng(0)
    rgb = rng.random((2, 3, 17, 19)).astype(np.float32)
    ours = rgb_to_lab(torch.from_numpy(rgb)).numpy()
    for image, lab in zip(rgb, ours):
        expected = cv2.cvtColor(np.ascontiguousarray(image.transpose(1, 2, 0)), cv2.COLOR_RGB2Lab)
        # OpenCV interpolates tabulated curves for floats (differences up to ~0.35 units)
        np.testing.assert_allclose(lab.transpose(1, 2, 0), expected, atol=0.4)


def test_regions_are_the_evaluations():
    rng = np.random.default_rng(1)
    points = np.stack([_mesh_points(rng) for _ in range(3)])
    masks = colour_regions(torch.from_numpy(points), SIZE).numpy()
    assert masks.shape == (3, 2, SIZE, SIZE)
    for face, mask in zip(points, masks):
        expected = region_masks(five_points(face), (SIZE, SIZE))
        np.testing.assert_array_equal(mask[0] > 0, expected["eyes"])
        np.testing.assert_array_equal(mask[1] > 0, expected["skin"])
        assert mask[0].sum() > 4 and mask[1].sum() > 4


def test_missing_points_give_no_region():
    masks = colour_regions(torch.zeros(2, 468, 2), SIZE)
    assert float(masks.sum()) == 0.0
    result = torch.rand(2, 3, SIZE, SIZE)
    assert torch.equal(colour_shift_loss(result, torch.rand(2, 3, SIZE, SIZE), masks), torch.zeros(2))


def test_loss_equals_eval_colour_shift_and_has_a_gradient():
    rng = np.random.default_rng(2)
    points = torch.from_numpy(np.stack([_mesh_points(rng) for _ in range(2)]))
    regions = colour_regions(points, SIZE)
    target = torch.rand(2, 3, SIZE, SIZE)
    result = (target * 0.7 + torch.tensor([0.2, 0.05, 0.0]).view(1, 3, 1, 1)).requires_grad_(True)
    loss = colour_shift_loss(result, target, regions)
    for i in range(2):
        as_bgr = [np.round(t[i].detach().numpy().transpose(1, 2, 0)[..., ::-1] * 255).astype(np.uint8)
                  for t in (result, target)]
        expected = [colour_shift(as_bgr[0], as_bgr[1], regions[i, r].numpy() > 0) for r in range(2)]
        # eval reads 8-bit images: within the rounding of one level
        assert float(loss[i].detach()) == pytest.approx(np.mean(expected), abs=0.3)
    assert float(loss.detach().min()) > 1.0
    loss.sum().backward()
    assert result.grad is not None and float(result.grad.abs().sum()) > 0
    assert float(colour_shift_loss(target, target, regions).max()) < 1e-2
    # a margin frees shifts up to it, and only lowers larger ones by it
    shifted = colour_shift_loss(result, target, regions, margin=1.0).detach()
    assert torch.allclose(shifted, loss.detach() - 1.0, atol=1e-4)
    assert float(colour_shift_loss(result, target, regions, margin=1e3).detach().max()) == 0.0
