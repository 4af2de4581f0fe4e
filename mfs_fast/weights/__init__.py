"""Where the project's own starter weights go once they exist (issue #7, still open).

``Swapper(source)`` with no ``weights=`` loads ``starter/`` here. No starter weights are
bundled yet: the first CPU run (``configs/starter.toml``, ~2,300 steps) did not produce a
usable swapper (see the README), so until one does, ``weights=DIR`` is required and this
module says so.
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
            "no default weights are bundled yet: pass weights=DIR (a folder from `mfs-fast convert`, "
            "`mfs-fast train`, or one holding MobileFaceSwap_224.pdparams and arcface.pdparams)"
        )
    return STARTER_DIR


def load_starter_weights():
    """The starter weights as :class:`~mfs_fast.models.FaceSwapModels` (fp32, eval mode)."""
    from ..checkpoints import load_weights

    return load_weights(starter_weights_dir())
