"""Where backends keep what they build (exported graphs, compiled libraries, engines, measurements),
and the model hash that keys it: one folder, ``$MFS_FAST_CACHE`` or ``~/.cache/mfs_fast``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .._version import __version__
from ..models import IDN

# The ONNX opset of the exported IDN graph; every cached artefact derives from that graph, so it
# is part of the model hash (with this package's version).
OPSET = 17


def cache_dir() -> Path:
    return Path(os.environ.get("MFS_FAST_CACHE", Path.home() / ".cache" / "mfs_fast"))


def model_hash(idn: IDN) -> str:
    """16 hex digits over the IDN's fixed weights, the opset and the package version."""
    digest = hashlib.sha256(f"{__version__}|opset{OPSET}".encode())
    for key, value in sorted(idn.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
