"""The pixel conversions of mfs_fast.preprocess: colour order, value range and layout, each one way
and back, and the places where two of them must agree to the bit."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from mfs_fast import preprocess as P


def _image(seed: int = 0, shape=(32, 40, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_bgr_to_rgb_new_array_or_into_out():
    image = _image()
    assert np.array_equal(P.bgr_to_rgb(image), image[..., ::-1])
    assert P.bgr_to_rgb(image).flags.c_contiguous
    out = np.zeros((2, *image.shape), np.uint8)
    assert P.bgr_to_rgb(image, out=out[1]) is not None
    assert np.array_equal(out[1], image[..., ::-1]) and not out[0].any()
    assert np.array_equal(P.rgb_to_bgr(P.bgr_to_rgb(image)), image)
    strided = np.zeros((image.shape[0], image.shape[1] * 2, 3), np.uint8)[:, ::2]  # not contiguous: numpy's copy
    assert P.bgr_to_rgb(image, out=strided) is strided and np.array_equal(strided, image[..., ::-1])


def test_to_unit_agrees_between_numpy_and_torch_for_every_byte():
    values = np.arange(256, dtype=np.uint8)
    as_numpy = P.to_unit(values)
    as_torch = P.to_unit(torch.from_numpy(values))
    assert as_numpy.dtype == np.float32 and as_torch.dtype == torch.float32
    assert np.array_equal(as_numpy, as_torch.numpy())
    assert as_numpy[0] == 0.0 and as_numpy[-1] == 1.0


def test_layouts_are_views_and_round_trip():
    images = np.stack([_image(1), _image(2)])
    nchw = P.nhwc_to_nchw(images)
    assert nchw.shape == (2, 3, 32, 40) and nchw.data_ptr() == torch.from_numpy(images).data_ptr()
    assert np.array_equal(P.chw_to_hwc(nchw[1]), images[1])


def test_frame_to_batch_and_back():
    crops = [_image(3), _image(4)]
    batch = P.crops_to_batch(crops)
    assert batch.shape == (2, 3, 32, 40) and batch.dtype == np.float32 and batch.flags.c_contiguous
    assert np.allclose(batch[1], P.bgr_to_tensor(crops[1])[0].numpy(), atol=1e-7)
    back = P.batch_item_to_bgr255(batch[1])
    assert back.shape == (32, 40, 3) and np.array_equal(np.rint(back).astype(np.uint8), crops[1])
    unit = P.bgr_to_unit_rgb(crops[0])
    assert np.array_equal(P.unit_rgb_to_bgr255(unit), P.batch_item_to_bgr255(P.bgr_to_chw(crops[0]).numpy()))


def test_tensor_back_to_bgr_both_roundings():
    image = _image(5)
    assert np.array_equal(P.tensor_to_bgr(P.bgr_to_tensor(image)), image)
    assert np.array_equal(P.unit_chw_to_bgr(P.bgr_to_chw(image)), image)
    half = torch.full((3, 1, 1), 2.5 / 255)  # x 255 = 2.5: half to even (official) vs half up (previews)
    assert P.tensor_to_bgr(half[None])[0, 0, 0] == 2 and P.unit_chw_to_bgr(half)[0, 0, 0] == 3
    assert np.array_equal(P.bgr_to_tensor(image)[0].numpy(), P.bgr_to_chw(image).numpy())
    assert np.array_equal(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), P.bgr_to_rgb(image))
