"""`mfs-fast demo`: two different people from shipped photos, a labelled side-by-side, and the
weights it says it uses (official when the store has them, else the starter set)."""

from __future__ import annotations

import cv2
import pytest

from mfs_fast import cli
from mfs_fast.demo import BAR, CLOSE_UP, PANEL_HEIGHT, SOURCE_PHOTO, astronaut_bgr, choose_weights
from mfs_fast.store import import_weights
from mfs_fast.weights import STARTER_DIR


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MFS_FAST_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_shipped_photo_is_small_and_shows_someone_else():
    from mfs_fast.face.detectors import create_detector
    from mfs_fast.identity import create_identity_encoder

    assert SOURCE_PHOTO.stat().st_size < 60_000
    detector, encoder = create_detector("blazeface"), create_identity_encoder("dlib")
    source, target = cv2.imread(str(SOURCE_PHOTO)), astronaut_bgr()
    a, b = (encoder.embed_faces(image, [detector.detect(image)[0].landmarks]) for image in (source, target))
    assert not encoder.same_person(a.embedding[0], b.embedding[0])


def test_demo_with_starter_weights(home, tmp_path, capsys):
    assert cli.main(["demo", "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "bundled starter weights" in out and "mfs-fast weights get official" in out and "swapped 1 face" in out
    strip = cv2.imread(str(tmp_path / "out" / "side_by_side.png"))
    assert strip.shape[0] == BAR + PANEL_HEIGHT + CLOSE_UP
    source, target, result = (cv2.imread(str(tmp_path / "out" / n)) for n in ("source.png", "target.png", "swapped.png"))
    assert source.shape != target.shape and result.shape == target.shape and (result != target).any()


def test_demo_prefers_the_official_set_when_installed(home):
    assert choose_weights(None).spec == "starter"
    import_weights(STARTER_DIR, "official")  # stands in for `weights get official` (no internet here)
    chosen = choose_weights(None)
    assert chosen.spec == "official" and "official" in chosen.note
    assert choose_weights("mine").spec == "mine"
