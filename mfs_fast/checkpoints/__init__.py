"""Weights: official Paddle checkpoints (read without Paddle) and the project's own format.

:func:`load_weights` accepts either a folder written by ``mfs-fast convert`` (safetensors +
manifest), a folder holding the two official files as they were downloaded, or the name of a set
in the model store.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..errors import CheckpointError
from ..models import FaceSwapModels
from .native_format import MANIFEST, load_weights_dir, save_weights
from .official import ARCFACE_FILE, SWAP_FILE, find_official_files, load_official, save_official_layout
from .pdparams import read_pdparams, write_pdparams


def load_weights(path: str | Path) -> FaceSwapModels:
    """Load the reference models from a converted folder, a folder of official files, or a name in
    the model store (``"official"``, ``"starter"``, a user's; see :mod:`mfs_fast.store`)."""
    from ..store import resolve_weights

    folder = resolve_weights(path)
    if not folder.is_dir():
        raise CheckpointError(f"--weights must be a folder; {folder} is {'a file' if folder.exists() else 'missing'}")
    if (folder / MANIFEST).is_file():
        models = load_weights_dir(folder)
    elif (official := find_official_files(folder)) is not None:
        models = load_official(*official)
    else:
        raise CheckpointError(
            f"{folder} holds no weights: expected either {MANIFEST} (from `mfs-fast convert`) "
            f"or the official {SWAP_FILE} and {ARCFACE_FILE}"
        )
    models.reload = partial(load_weights, folder)
    return models


__all__ = [
    "ARCFACE_FILE",
    "SWAP_FILE",
    "load_official",
    "load_weights",
    "load_weights_dir",
    "read_pdparams",
    "save_official_layout",
    "save_weights",
    "write_pdparams",
]
