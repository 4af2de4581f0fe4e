"""The ``fused`` backend: the IDN on mfs_fast's own fused C++ kernels (mfs_fast.fused)."""

from __future__ import annotations

from .. import native
from ..fused import FusedIDN
from .base import register_backend


def _probe() -> str | None:
    return None if native.AVAILABLE else native.IMPORT_ERROR


register_backend("fused", probe=_probe)(FusedIDN)
