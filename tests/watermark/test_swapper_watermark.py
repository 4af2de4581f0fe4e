"""Swapper marks every swapped face by default, after the swap (so the swap's parity tests still
compare the swap itself), and ``watermark=False`` is an explicit opt-out with a warning."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import _astronaut_bgr
from mfs_fast import MfsError, Swapper
from mfs_fast.face.align import alignment_matrix, invert_affine
from mfs_fast.face.detectors import create_detector
from mfs_fast.face.paste import footprint_box
from mfs_fast.watermark import OPT_OUT_WARNING, Watermark, detect


@pytest.fixture(scope="module")
def swaps(official_models):
    astronaut = _astronaut_bgr()
    detector = create_detector("blazeface")
    marking = Swapper(astronaut, official_models, detector=detector, watermark_id=77)
    with pytest.warns(UserWarning) as caught:
        plain = Swapper(astronaut, official_models, detector=detector, watermark=False)
    assert OPT_OUT_WARNING in [str(w.message) for w in caught]
    return astronaut, marking, marking.swap(astronaut), plain.swap(astronaut)


def test_default_output_carries_the_mark(swaps):
    _, marking, marked, _ = swaps
    found = detect(marked)
    assert found.found and str(found.payload) == "mfs_fast 0.1, user id 77", found
    assert marking.stats.seconds["mark"] > 0


def test_opted_out_output_does_not(swaps):
    astronaut, _, _, plain = swaps
    assert (plain != astronaut).any() and not detect(plain).found


def test_the_mark_is_added_to_the_swap_over_each_face_footprint(swaps):
    """marked == Watermark().mark(unmarked swap, footprint boxes): nothing else differs."""
    astronaut, marking, marked, plain = swaps
    boxes = [footprint_box(invert_affine(alignment_matrix(face.landmarks, marking.size)), marking.size,
                           astronaut.shape) for face in marking.last_faces]
    expected = Watermark(user_id=77).mark(plain.copy(), boxes)
    np.testing.assert_array_equal(marked, expected)


def test_a_bad_watermark_id_fails_before_loading(tmp_path):
    with pytest.raises(MfsError, match="watermark user id"):
        Swapper(np.zeros((8, 8, 3), np.uint8), tmp_path / "no-weights", watermark_id=70000)
