"""The project's own starter weights (issue #7): what ``Swapper(source)`` uses without ``weights=``.

``starter/`` holds a student trained by ``mfs-fast train --config configs/starter.toml`` (int8
storage, 21 MB); its model card, with data, licences (research / demonstration only) and
held-out metrics, is ``README.md`` next to this file. It is a weak swapper: use the official
weights for real work.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError

STARTER_DIR = Path(__file__).resolve().parent / "starter"
MODEL_CARD = Path(__file__).resolve().parent / "README.md"


def starter_weights_dir() -> Path:
    """Folder of the bundled starter weights (a CheckpointError if this install lacks them)."""
    if not (STARTER_DIR / "manifest.json").is_file():
        raise CheckpointError(
            "the bundled starter weights are missing from this install: pass weights=DIR (a folder from `mfs-fast convert`, "
            "`mfs-fast train`, or one holding MobileFaceSwap_224.pdparams and arcface.pdparams)"
        )
    return STARTER_DIR


def load_starter_weights():
    """The starter weights as :class:`~mfs_fast.models.FaceSwapModels` (fp32, eval mode)."""
    from ..checkpoints import load_weights

    return load_weights(starter_weights_dir())
