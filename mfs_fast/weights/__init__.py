"""The project's own starter weights, shipped in the package (model card: README.md here).

``Swapper(source)`` with no ``weights=`` uses them. They were trained by ``mfs-fast train``
on ``configs/starter.toml``; quality is far below the official MobileFaceSwap weights (see
the model card), which ``weights=DIR`` loads instead.
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
            f"the bundled starter weights are missing from {STARTER_DIR} (a broken install?): "
            "reinstall mfs_fast, or pass weights=DIR (a folder from `mfs-fast convert` or `mfs-fast train`)"
        )
    return STARTER_DIR


def load_starter_weights():
    """The starter weights as :class:`~mfs_fast.models.FaceSwapModels` (fp32, eval mode)."""
    from ..checkpoints import load_weights

    return load_weights(starter_weights_dir())
