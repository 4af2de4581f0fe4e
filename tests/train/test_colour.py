"""The training colour loss: OpenCV's Lab, zero for the target itself, a colour cast costs
more than the same change in lightness, the margin frees small casts, and it has a gradient."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from mfs_fast.train.colour import colour_loss, rgb_to_lab

SIZE = 64


def test_lab_matches_opencv_on_random_colours():
    rng = np.random.default_rng(0)
    rgb = rng.random((2, 3, 17, 19)).astype(np.float32)
    ours = rgb_to_lab(torch.from_numpy(rgb)).numpy()
    for image, lab in zip(rgb, ours):
        expected = cv2.cvtColor(np.ascontiguousarray(image.transpose(1, 2, 0)), cv2.COLOR_RGB2Lab)
        # OpenCV interpolates tabulated curves for floats (differences up to ~0.35 units)
        np.testing.assert_allclose(lab.transpose(1, 2, 0), expected, atol=0.4)


def _face_mask() -> torch.Tensor:
    mask = np.zeros((SIZE, SIZE), np.float32)
    cv2.ellipse(mask, (SIZE // 2, SIZE // 2), (SIZE // 3, SIZE // 2 - 4), 0, 0, 360, 1.0, -1)
    return torch.from_numpy(mask)[None, None].repeat(2, 1, 1, 1)


def test_zero_for_the_target_and_outside_the_face():
    torch.manual_seed(0)
    target = torch.rand(2, 3, SIZE, SIZE) * 0.6 + 0.2
    mask = _face_mask()
    assert float(colour_loss(target, target, mask, 3.0, 0.3).max()) < 1e-2
    changed = target.clone()
    changed[..., :, :4] = 1.0 - changed[..., :, :4]  # only outside the hull, beyond the blur
    assert float(colour_loss(changed, target, mask, 1.0, 0.3).max()) < 1e-2


def test_a_cast_costs_more_than_lightness_and_margin_frees_small_ones():
    torch.manual_seed(1)
    target = torch.rand(2, 3, SIZE, SIZE) * 0.5 + 0.25
    mask = _face_mask()
    lab = rgb_to_lab(target)
    cast = (target * torch.tensor([1.0, 0.85, 1.0]).view(1, 3, 1, 1)).requires_grad_(True)  # a magenta cast
    brighter = target * 1.1
    cast_lab_change = (rgb_to_lab(cast.detach()) - lab).abs().mean()
    bright_lab_change = (rgb_to_lab(brighter) - lab).abs().mean()
    loss = colour_loss(cast, target, mask, 3.0, 0.3)
    # per unit of raw Lab change, a cast costs well over twice what a lightness change does
    per_unit_cast = float(loss.detach().min()) / float(cast_lab_change)
    per_unit_light = float(colour_loss(brighter, target, mask, 3.0, 0.3).max()) / float(bright_lab_change)
    assert per_unit_cast > 2 * per_unit_light
    freed = colour_loss(cast.detach(), target, mask, 3.0, 0.3, margin=1.0)
    assert torch.allclose(freed, loss.detach() - 1.0, atol=1e-4)
    assert float(colour_loss(cast.detach(), target, mask, 3.0, 0.3, margin=1e3).max()) == 0.0
    loss.sum().backward()
    assert cast.grad is not None and float(cast.grad.abs().sum()) > 0
