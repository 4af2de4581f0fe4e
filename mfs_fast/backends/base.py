"""The one interface every IDN runtime implements, and the capabilities some of them add.

A backend is built once for a set of models (``compile/load`` happen in its constructor),
receives an identity with ``set_identity`` (a copy into existing weight buffers: never a
rebuild) and then runs aligned batches. Registering is :mod:`._registry`'s job, choosing and
building one :mod:`._factory`'s.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import MfsError
from ..models import IdentityWeights

# Order in which backends are listed (and tried, when a caller passes this list).
DEFAULT_PREFERENCE = ("tensorrt", "fused-cuda", "tvm-cuda", "fused", "tvm-fused", "tvm", "onnxruntime", "torch")
# What Swapper and the CLI use when no backend is named: the fastest measured on this project's
# reference CPU (bench/RESULTS.md: the fused C++ kernels, about 2x PyTorch channels_last), and
# PyTorch where the C++ core is not built (the fallback is logged once, with the reason).
DEFAULT_BACKEND = ("fused", "torch")


class BackendUnavailable(MfsError):
    """A backend cannot run on this machine; the message says why."""


@runtime_checkable
class Backend(Protocol):
    name: str

    def set_identity(self, weights: IdentityWeights) -> None:
        """Install a new identity's weights (no recompilation)."""
        ...

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aligned RGB float32 batch N x 3 x S x S in [0, 1] -> (faces N x 3 x S x S, masks N x 1 x S x S)."""
        ...


@runtime_checkable
class NativeEngine(Protocol):
    """A capability: the backend has a native CPU engine that the C++ pipeline core can run whole
    frames on (align -> IDN -> blend in one call). Callers ask for this, never for a class."""

    name: str
    threads: int

    def native_engine(self, height: int, width: int | None = None, replica: int = 0):
        """The engine for one input size; identities set on the backend reach it. ``replica`` > 0:
        another engine of that size, for another thread."""
        ...


def checked_batch(batch: np.ndarray, has_identity: bool) -> np.ndarray:
    """The common start of every ``run``: an identity must be set; the batch becomes C-contiguous float32."""
    if not has_identity:
        raise MfsError("backend has no identity yet: call set_identity(weights) first")
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise MfsError(f"expected an aligned RGB batch N x 3 x S x S, got shape {batch.shape}")
    return batch
