"""Where our 5 landmarks sit in dlib's 150x150 face chip, and the fit that makes the chip.

dlib aligns a face for its ResNet by a similarity transform from its own 5-point shape
predictor (eye corners, base of the nose) to its mean face, 150 px with padding 0.25. Our
landmarks are other points (eye centres, nose tip, mouth corners), so the template below was
measured, not copied: ``scripts/derive_dlib_chip_template.py`` mapped our detector's
landmarks into dlib's own chip (through dlib's ``get_face_chip_details`` transform) for the
faces both dlib and our detector found in 1,000 photos spread over
``datasets/faces_v1`` (890 faces), and averaged them. Spread (std) per point: eyes ~1.9 px,
nose ~5 px, mouth ~5 px (our warp with dlib's own transform reproduces dlib's chips to 0.65
levels mean abs). We fit a least-squares similarity (as dlib does) to all five.
"""

from __future__ import annotations

import numpy as np

from .base import similarity_fit

CHIP_SIZE = 150

DLIB_CHIP_TEMPLATE_150 = np.array(
    [
        [45.322, 45.205],  # eye_1
        [100.189, 45.053],  # eye_2
        [72.605, 79.412],  # nose tip
        [48.807, 101.212],  # mouth_1
        [97.742, 101.123],  # mouth_2
    ],
    dtype=np.float64,
)


def dlib_chip_matrix(landmarks: np.ndarray) -> np.ndarray:
    """2x3 float64 affine frame pixel -> dlib chip pixel for a face with our 5 landmarks."""
    return similarity_fit(np.asarray(landmarks, np.float64).reshape(5, 2), DLIB_CHIP_TEMPLATE_150)
