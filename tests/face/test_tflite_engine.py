"""The two engines for the .tflite models: LiteRT and the PyTorch executor give the same
answers, batched or not, and the choice is reported clearly when it cannot be honoured."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mfs_fast.errors import MfsError
from mfs_fast.face import tflite_engine
from mfs_fast.face.blazeface import BlazeFace
from mfs_fast.face.face_mesh import FaceMesh, roi_from_detection
from mfs_fast.face.model_files import tflite_model_path
from mfs_fast.face.tflite_engine import LiteRTGraph, TorchGraph, load_tflite_model

pytest.importorskip("ai_edge_litert", reason="LiteRT (ai-edge-litert) is not installed: nothing to compare")


def _astronaut() -> np.ndarray:
    import skimage.data

    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def test_auto_picks_litert_where_installed_and_both_load():
    path = tflite_model_path("face_landmark.tflite")
    assert isinstance(load_tflite_model(path), LiteRTGraph)
    assert isinstance(load_tflite_model(path, "torch"), TorchGraph)


def test_mesh_outputs_agree_across_engines_and_batch_sizes(seed):
    """A batch of 5 (LiteRT resizes its input per batch size) against the PyTorch executor."""
    path = tflite_model_path("face_landmark.tflite")
    x = np.random.default_rng(seed).uniform(0, 1, (5, 192, 192, 3)).astype(np.float32)
    litert, torch_graph = load_tflite_model(path, "litert"), load_tflite_model(path, "torch")
    assert litert.output_names == torch_graph.output_names
    batched = litert(x)
    for got, want in zip(batched, torch_graph(x)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-3)
    for got, want in zip(litert(x[2:3]), batched):  # one image alone = its row of the batch
        np.testing.assert_allclose(got.reshape(-1), want.reshape(5, -1)[2], rtol=2e-5, atol=2e-3)


@pytest.mark.parametrize("engine", ["litert", "torch"])
def test_detect_many_equals_detect_one_by_one(engine):
    """LiteRT returns a batch's outputs as (1, N * 2304, ...): they must be split per image."""
    detector = BlazeFace(min_score=0.4, engine=engine)
    face, flipped = _astronaut(), np.ascontiguousarray(_astronaut()[:, ::-1])
    together = detector.detect_many([face, np.zeros((300, 500, 3), np.uint8), flipped])
    alone = [detector.detect(face), [], detector.detect(flipped)]
    assert [len(d) for d in together] == [len(d) for d in alone] == [1, 0, 1]
    for many, one in zip(together, alone):
        for a, b in zip(many, one):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)


def test_mesh_landmarks_agree_across_engines():
    image = _astronaut()
    detection = BlazeFace(engine="torch").detect(image)[0]
    roi = roi_from_detection(detection.box, detection.keypoints)
    a, b = FaceMesh("litert").run(image, [roi] * 4), FaceMesh("torch").run(image, [roi] * 4)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.points, y.points, atol=0.02)  # pixels
        assert abs(x.presence - y.presence) < 1e-4


def test_engine_errors_are_one_clear_line(monkeypatch):
    with pytest.raises(MfsError, match="must be one of auto, litert, torch, got 'tflite'"):
        load_tflite_model(tflite_model_path("face_landmark.tflite"), "tflite")
    monkeypatch.setattr(tflite_engine, "litert_available", lambda: False)
    with pytest.raises(MfsError, match="needs the ai-edge-litert package"):
        load_tflite_model(tflite_model_path("face_landmark.tflite"), "litert")
    assert isinstance(load_tflite_model(tflite_model_path("face_landmark.tflite")), TorchGraph)  # auto falls back


def test_one_interpreter_serves_every_batch_size(seed):
    """The input is resized to each call's batch, up and down: every image's outputs equal its
    own single-image run, and memory grows to the largest batch once, not once per size (an
    interpreter per size held ~3 MB an image each: ~84 MB for the mesh's batches 1-7)."""
    from mfs_fast.memory import rss_bytes

    graph = load_tflite_model(tflite_model_path("face_landmark.tflite"), "litert")
    x = np.random.default_rng(seed).uniform(0, 1, (8, 192, 192, 3)).astype(np.float32)
    alone = [graph(x[i:i + 1]) for i in range(8)]
    graph(x)  # the largest batch first: the arena reaches its size
    before = rss_bytes()
    for batch in (3, 7, 1, 5, 2, 6, 4, 8):
        for output, single in zip(graph(x[:batch]), alone[batch - 1]):
            np.testing.assert_allclose(output.reshape(batch, -1)[-1], single.reshape(-1), rtol=2e-5, atol=2e-3)
    assert graph.largest_batch == 8 and graph.batch == 8
    assert rss_bytes() - before < 30 * 2**20, (rss_bytes() - before) / 2**20
