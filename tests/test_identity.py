"""The offline identity encoder: dlib .dat reader, PyTorch port vs dlib itself, alignment, selection."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import SHARED_ASSETS, _astronaut_bgr
from mfs_fast.errors import CheckpointError, MfsError
from mfs_fast.face.align import align_face
from mfs_fast.identity import create_identity_encoder, similarity
from mfs_fast.identity.dlib_format import read_dlib_net
from mfs_fast.identity.dlib_resnet import NUM_PARAMETERS
from mfs_fast.identity.model_files import DLIB_MODEL_BYTES, dlib_model_path

CHIPS = SHARED_ASSETS / "chips"
IMAGES = SHARED_ASSETS / "images"
PARITY_TOLERANCE = 1e-5  # max abs difference of 128-d descriptors, port vs dlib


@pytest.fixture(scope="module")
def encoder():
    return create_identity_encoder("dlib")


@pytest.fixture(scope="module")
def detector():
    from mfs_fast.face.detectors import create_detector

    return create_detector("blazeface")


@pytest.fixture(scope="module")
def dlib_reference():
    dlib = pytest.importorskip("dlib", reason="dlib-bin (test reference) is not installed")
    return dlib.face_recognition_model_v1(str(dlib_model_path()))


def _rgb_batch(chips: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255.0


def _shared_chips() -> tuple[list[np.ndarray], list[str]]:
    if not CHIPS.is_dir():
        pytest.skip(f"shared chips not found at {CHIPS}")
    files = sorted(CHIPS.glob("*/*.jpg"))
    return [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files], [f.parent.name for f in files]


def test_dat_file_is_read_whole():
    net = read_dlib_net(dlib_model_path())
    assert dlib_model_path().stat().st_size == DLIB_MODEL_BYTES
    assert net.input_size == (150, 150)
    assert net.input_mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    assert net.count("con_4") == 29 and net.count("affine_") == 29 and net.count("fc_2") == 1
    assert net.num_parameters == NUM_PARAMETERS


def test_truncated_or_missing_file_is_a_clear_error(tmp_path, monkeypatch):
    data = dlib_model_path().read_bytes()
    truncated = tmp_path / "cut.dat"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.dat"):
        read_dlib_net(truncated)
    not_dlib = tmp_path / "noise.dat"
    not_dlib.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a dlib DNN file"):
        read_dlib_net(not_dlib)
    monkeypatch.setenv("MFS_FAST_DLIB_MODEL", str(tmp_path / "absent.dat"))
    with pytest.raises(CheckpointError, match="does not name a file"):
        create_identity_encoder("dlib")
    with pytest.raises(MfsError, match="unknown identity encoder"):
        create_identity_encoder("vgg")


def test_identity_encoders_are_a_registry(monkeypatch, tmp_path):
    from mfs_fast.identity import ENCODERS, IDENTITY_ENCODERS, OFFLINE_ENCODERS

    assert IDENTITY_ENCODERS.names() == list(ENCODERS) == ["dlib", "arcface", "faceres", "mobileface"]
    assert OFFLINE_ENCODERS == ("dlib", "faceres", "mobileface")
    with pytest.raises(MfsError) as caught:
        create_identity_encoder("vgg")
    assert str(caught.value) == "unknown identity encoder 'vgg'; choose one of dlib, arcface, faceres, mobileface"
    with pytest.raises(MfsError, match="arcface identity encoder needs loaded weights"):
        create_identity_encoder("arcface")
    # the probes say which model file is missing and what to do, in one line
    monkeypatch.setenv("MFS_FAST_HUMAN_MODELS_DIR", str(tmp_path / "empty"))
    for name in ("faceres", "mobileface"):
        reason = IDENTITY_ENCODERS.unavailable_reason(name)
        assert f"{name}.json" in reason and "run ./run.sh setup" in reason and "\n" not in reason
    real = dlib_model_path()
    monkeypatch.setenv("MFS_FAST_DLIB_MODEL", str(tmp_path / "absent.dat"))
    assert "does not name a file" in IDENTITY_ENCODERS.unavailable_reason("dlib")
    assert IDENTITY_ENCODERS.available() == ["arcface"]
    with pytest.raises(CheckpointError, match="identity encoder 'dlib' cannot be used: MFS_FAST_DLIB_MODEL="):
        create_identity_encoder("dlib")
    # a model file of the caller's own is used whatever the default file's probe says
    assert create_identity_encoder("dlib", model_path=str(real)).model_path == real


def test_port_matches_dlib_on_a_packaged_photo(encoder, dlib_reference, detector):
    """Always-on parity: our chip of skimage's astronaut through dlib and through the port."""
    image = _astronaut_bgr()
    face = detector.detect(image)[0]
    chip = encoder.chip(image, face.landmarks)
    expected = np.array(dlib_reference.compute_face_descriptor(chip))
    with torch.no_grad():
        got = encoder.embed_chips(_rgb_batch([chip])).raw[0].numpy()
    assert np.abs(got - expected).max() <= PARITY_TOLERANCE


def test_port_matches_dlib_on_shared_chips(encoder, dlib_reference):
    chips, _ = _shared_chips()
    expected = np.array([np.array(dlib_reference.compute_face_descriptor(c)) for c in chips])
    with torch.no_grad():
        features = encoder.embed_chips(_rgb_batch(chips))
    assert np.abs(features.raw.numpy() - expected).max() <= PARITY_TOLERANCE
    assert {name: tuple(m.shape[1:]) for name, m in features.maps.items()} == {
        "32x35x35": (32, 35, 35), "64x17x17": (64, 17, 17), "128x8x8": (128, 8, 8),
        "256x4x4": (256, 4, 4), "256x2x2": (256, 2, 2)}


def test_same_and_different_people_on_shared_chips(encoder):
    chips, names = _shared_chips()
    with torch.no_grad():
        features = encoder.embed_chips(_rgb_batch(chips))
    distance = encoder.distance(features.raw, features.raw).numpy()
    cosine = similarity(features.embedding, features.embedding).numpy()
    pairs = list(itertools.combinations(range(len(chips)), 2))
    same = np.array([names[i] == names[j] for i, j in pairs])
    by_distance = np.array([distance[i, j] < 0.6 for i, j in pairs])
    by_cosine = np.array([cosine[i, j] >= encoder.match_threshold for i, j in pairs])
    assert (by_distance == same).mean() >= 0.98
    assert (by_cosine == same).mean() >= 0.98


def test_obama_and_biden_separate(encoder, detector):
    if not IMAGES.is_dir():
        pytest.skip(f"shared images not found at {IMAGES}")
    embeddings = {}
    for name in ("obama_1", "obama_2", "obama_3", "biden_1"):
        image = cv2.imread(str(IMAGES / f"{name}.jpg"))
        embeddings[name] = encoder.embed_faces(image, [detector.detect(image)[0].landmarks])
    obamas = [embeddings[f"obama_{i}"].raw for i in (1, 2, 3)]
    for a, b in itertools.combinations(obamas, 2):
        assert float(encoder.distance(a, b)) < 0.6
    for obama in obamas:
        assert float(encoder.distance(obama, embeddings["biden_1"].raw)) > 0.6
        assert not encoder.same_person(obama[0], embeddings["biden_1"].embedding[0])


def test_embedding_from_aligned_crop_matches_the_direct_chip(encoder, detector):
    """The differentiable path (chip resampled out of our 224 crop) agrees with the chip
    warped from the frame. Not exactly: the crop is a full affine fit to the ArcFace template
    (the face's own proportions are normalised away) and the chip's bottom rows lie below it."""
    image = _astronaut_bgr()
    face = detector.detect(image)[0]
    direct = encoder.embed_faces(image, [face.landmarks])
    crop = align_face(image, face.landmarks, 224).crop
    aligned = _rgb_batch([cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)])
    with torch.no_grad():
        from_crop = encoder.embed(aligned)
    assert float(similarity(direct.embedding[0], from_crop.embedding[0])) > 0.95
    assert float(encoder.distance(direct.raw, from_crop.raw)) < 0.4  # dlib's same-person limit: 0.6


def test_gradients_reach_the_input(encoder, aligned_pair):
    source, _, _, _ = aligned_pair
    aligned = _rgb_batch([cv2.cvtColor(source, cv2.COLOR_BGR2RGB)]).requires_grad_(True)
    features = encoder.embed(aligned)
    loss = 1 - features.embedding[0] @ features.embedding[0].detach().flip(0) + features.maps["256x4x4"].mean()
    loss.backward()
    assert aligned.grad is not None and torch.isfinite(aligned.grad).all() and aligned.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.parameters())


def test_one_pass_over_several_batches_splits_into_each_batchs_features(encoder, aligned_pair):
    """The trainer embeds sources, targets and teacher swaps in one dlib pass and splits it:
    each part equals its own pass (float32; per-sample network, no batch statistics)."""
    source, target, _, _ = aligned_pair
    batches = [_rgb_batch([cv2.cvtColor(source, cv2.COLOR_BGR2RGB)]),
               _rgb_batch([cv2.cvtColor(target, cv2.COLOR_BGR2RGB), cv2.cvtColor(source, cv2.COLOR_BGR2RGB)[::-1]]),
               torch.zeros(0, 3, 224, 224)]  # a step without teacher rows
    with torch.no_grad():
        parts = encoder.embed(torch.cat(batches)).split([len(b) for b in batches])
        assert parts[2].embedding.shape == (0, 128)
        for batch, part in zip(batches[:2], parts[:2]):
            alone = encoder.embed(batch)
            assert part.embedding.shape == alone.embedding.shape and part.maps.keys() == alone.maps.keys()
            assert torch.allclose(part.embedding, alone.embedding, atol=1e-5)
            assert torch.allclose(part.raw, alone.raw, atol=1e-4)
            for name in alone.maps:
                assert torch.allclose(part.maps[name], alone.maps[name], atol=1e-4, rtol=1e-4), name
    assert not torch.allclose(parts[1].embedding[0], parts[1].embedding[1], atol=1e-2)  # rows not mixed up


def test_arcface_encoder_resamples_like_the_official_identity_input(official_models, aligned_pair):
    """The ArcFace chip taken out of the 224 crop by grid_sample equals the official cv2.resize input."""
    from mfs_fast.preprocess import identity_input

    source, _, _, _ = aligned_pair
    arcface = create_identity_encoder("arcface", models=official_models)
    with torch.no_grad():
        expected, expected_map = official_models.identity(identity_input(source))
        features = arcface.embed(_rgb_batch([cv2.cvtColor(source, cv2.COLOR_BGR2RGB)]))
    # the official input is rounded to 8 bits by cv2.resize (<= 0.5 level), ours is not
    assert torch.allclose(features.raw, expected, atol=2e-2 * expected.abs().max())
    assert float(similarity(features.raw[0], expected[0])) > 0.999
    assert features.maps["512x7x7"].shape == expected_map.shape


def test_similarity_shapes():
    a, b = torch.randn(3, 8), torch.randn(5, 8)
    assert similarity(a, b).shape == (3, 5)
    assert float(similarity(a[0], a[0])) == pytest.approx(1.0, abs=1e-6)
    assert float(similarity(a[0], -a[0])) == pytest.approx(-1.0, abs=1e-6)


def test_reference_selects_only_that_person(encoder, detector):
    if not IMAGES.is_dir():
        pytest.skip(f"shared images not found at {IMAGES}")
    from mfs_fast.face.select import FaceSelector

    group = cv2.imread(str(IMAGES / "group_6faces.jpg"))
    faces = detector.detect(group)
    assert len(faces) == 6
    # Two of the six (the faces at x ~730 and ~870) are within dlib's own same-person distance
    # of each other (cosine 0.93 > 0.91); the two largest faces are not, whatever order the
    # detector lists them in.
    largest = sorted(faces, key=lambda face: -float(np.linalg.norm(face.landmarks[1] - face.landmarks[0])))[:2]
    for reference in largest:
        selector = FaceSelector("all", encoder=encoder)
        selector.set_reference(group, reference)
        assert selector.select(group, faces) == [reference]


def test_swapper_reference_swaps_only_matching_faces():
    if not IMAGES.is_dir():
        pytest.skip(f"shared images not found at {IMAGES}")
    from mfs_fast import FaceSwapModels, Swapper

    swapper = Swapper(_astronaut_bgr(), FaceSwapModels.random(), reference=IMAGES / "obama_1.jpg", core=False)
    obama, biden = cv2.imread(str(IMAGES / "obama_2.jpg")), cv2.imread(str(IMAGES / "biden_1.jpg"))
    assert not np.array_equal(swapper.swap(obama), obama)
    assert len(swapper.last_faces) == 1
    assert np.array_equal(swapper.swap(biden), biden)
    assert swapper.last_faces == []
