"""The SCRFD ONNX detector's decoding, on a model file laid out exactly like SCRFD's outputs.

Real SCRFD weights cannot be downloaded here, so the test builds an ONNX graph with SCRFD's
9 outputs whose values encode faces at known places, and checks boxes, landmarks, scores,
thresholding and NMS after letterboxing and scaling back.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfs_fast.errors import MfsError
from mfs_fast.face import create_detector

SIZE = 640
STRIDES = (8, 16, 32)
# faces in 640x640 detector space: (stride, grid x, grid y, anchor, score, half-width, half-height)
FACES = [(16, 20, 15, 0, 0.9, 40.0, 50.0), (16, 20, 15, 1, 0.7, 42.0, 48.0), (32, 5, 5, 0, 0.3, 30.0, 30.0)]
KEYPOINTS = np.array([[-15, -15], [15, -15], [0, 5], [-12, 25], [12, 25]], np.float32)  # from the centre


class FakeSCRFD(torch.nn.Module):
    def __init__(self):
        super().__init__()
        tensors = {}
        for stride in STRIDES:
            n = (SIZE // stride) ** 2 * 2
            tensors[f"score_{stride}"] = torch.zeros(n, 1)
            tensors[f"bbox_{stride}"] = torch.zeros(n, 4)
            tensors[f"kps_{stride}"] = torch.zeros(n, 10)
        for stride, gx, gy, anchor, score, hw, hh in FACES:
            index = (gy * (SIZE // stride) + gx) * 2 + anchor
            tensors[f"score_{stride}"][index, 0] = score
            tensors[f"bbox_{stride}"][index] = torch.tensor([hw, hh, hw, hh]) / stride
            tensors[f"kps_{stride}"][index] = torch.from_numpy(KEYPOINTS.reshape(-1)) / stride
        for name, value in tensors.items():
            self.register_buffer(name, value)

    def forward(self, x):
        zero = x.mean() * 0
        return tuple(getattr(self, f"{kind}_{s}") + zero for kind in ("score", "bbox", "kps") for s in STRIDES)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scrfd") / "fake_scrfd.onnx"
    names = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in STRIDES]
    torch.onnx.export(FakeSCRFD(), (torch.zeros(1, 3, SIZE, SIZE),), str(path), input_names=["input.1"],
                      output_names=names, opset_version=17, dynamo=False)
    return path


def test_decodes_boxes_landmarks_and_suppresses_duplicates(model_file):
    detector = create_detector(str(model_file), min_score=0.5)
    image = np.random.default_rng().integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    faces = detector.detect(image)
    assert len(faces) == 1  # the 0.7 duplicate is suppressed, the 0.3 one is below threshold
    scale = SIZE / 1280  # letterboxed at the top left
    centre = np.array([20 * 16, 15 * 16], np.float32)
    np.testing.assert_allclose(faces[0].box, np.r_[centre - [40, 50], centre + [40, 50]] / scale, atol=1e-3)
    np.testing.assert_allclose(faces[0].landmarks, (centre + KEYPOINTS) / scale, atol=1e-3)
    assert faces[0].score == pytest.approx(0.9)
    assert len(detector.detect(image)) == 1 and len(create_detector(str(model_file), min_score=0.25).detect(image)) == 2


def test_bad_model_files(tmp_path):
    with pytest.raises(MfsError, match="SCRFD model not found"):
        create_detector(str(tmp_path / "missing.onnx"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(MfsError, match="cannot load"):
        create_detector(str(broken))
