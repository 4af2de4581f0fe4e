"""The bundled starter weights: present, small, documented, and what ``Swapper(source)`` runs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from conftest import _astronaut_bgr
from mfs_fast.weights import MODEL_CARD, STARTER_DIR, load_starter_weights

REPO_LIMIT_BYTES = 25 * 1024 * 1024

pytestmark = pytest.mark.skipif(
    not (STARTER_DIR / "manifest.json").is_file(),
    reason="this install lacks the bundled starter weights (mfs_fast/weights/starter)",
)


def test_starter_files_are_small_and_int8():
    manifest = json.loads((STARTER_DIR / "manifest.json").read_text())
    assert manifest["identity"] == "dlib-adapter" and manifest["storage"] == "int8"
    total = sum(p.stat().st_size for p in STARTER_DIR.iterdir())
    assert total <= REPO_LIMIT_BYTES, total
    assert manifest["provenance"]["trained_by"] == "mfs-fast train"


def test_model_card_states_data_licences_and_held_out_metrics():
    card = MODEL_CARD.read_text()
    for needed in ("faces_v1", "research", "held out", "retrieval", "pose", "FD-dlib", "int8", "mesh-warp"):
        assert needed.lower() in card.lower(), needed


def test_swapper_with_no_weights_swaps_a_face():
    """The README's promise: a fresh install swaps with ``Swapper(source)`` alone."""
    from mfs_fast import Swapper

    source = _astronaut_bgr()
    target = cv2.flip(source, 1)
    swapper = Swapper(source)
    result = swapper.swap(target)
    assert len(swapper.last_faces) == 1
    x1, y1, x2, y2 = swapper.last_faces[0].box.astype(int)
    changed = np.abs(result.astype(np.int16) - target).max(axis=2) > 0
    assert changed[y1:y2, x1:x2].mean() > 0.2  # the face changed ...
    outside = np.ones_like(changed)
    outside[max(0, y1 - 80):y2 + 80, max(0, x1 - 80):x2 + 80] = False
    assert not changed[outside].any()  # ... nothing far from it did


@pytest.mark.parametrize("field", ["iin", "idn", "identity"])
def test_starter_weights_are_finite(field):
    module = getattr(load_starter_weights(), field)
    assert all(torch.isfinite(t).all() for t in module.state_dict().values())
