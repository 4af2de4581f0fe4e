"""The ``fused-cuda`` backend: the IDN on mfs_fast's own CUDA kernels (issue #5, GPU): ``mfs_fast._cuda``,
``kernels/cuda/``.

:class:`CudaFusedIDN` follows the backend contract (``set_identity``, ``run``; see
:mod:`mfs_fast.backends.base`) and works as the CPU :class:`~mfs_fast.backends.fused.FusedIDN` with
another engine: both are :class:`~mfs_fast.backends.fused_base.FusedEngines`, so the same folded
heads, the same identity conversion (factored pointwise form: the base kernels ``W`` are uploaded once, an identity hands
the GPU its depthwise kernels and the modulation vectors ``s`` and ``d``, O(C) values per layer;
identities from another IIN re-upload that layer's ``W``). One engine per input size, made on
first use, owning its device buffers; ``run`` copies the batch in, runs the 15 kernels on one
stream (replayed from a CUDA graph per batch size) and copies faces and masks back.

``mfs_fast._cuda`` is built whenever ``nvcc`` is present at install time, GPU or not; importing it
never needs a GPU or a driver. Without the module or without a GPU, :class:`CudaFusedIDN` raises
:class:`CudaUnavailableError` saying which (:func:`unavailable_reason` says it without raising).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from ..errors import MfsError
from ..models import FaceSwapModels
from ._registry import register_backend
from .fused_base import FusedEngines

BUILD_HINT = (
    "mfs_fast._cuda (the CUDA kernels) is not built: it is built by `pip install -e . --no-build-isolation` "
    "(or ./run.sh) only when the CUDA compiler nvcc is on PATH at install time"
)

try:
    from .. import _cuda as _module
except ImportError as error:  # not built (no nvcc at install time), or built for another Python
    _module = None
    IMPORT_ERROR: str | None = f"{BUILD_HINT} (import error: {error})"
else:
    IMPORT_ERROR = None

BUILT = _module is not None


class CudaUnavailableError(MfsError):
    """The CUDA kernels cannot run here: the module is not built, or no GPU is visible (the message says which)."""


def unavailable_reason(module: ModuleType | None = None) -> str | None:
    """None when the CUDA kernels can run here, else why not (not built / no GPU)."""
    module = module or _module
    if module is None:
        return IMPORT_ERROR
    reason = module.unavailable_reason()
    return f"mfs_fast._cuda is built, but cannot run here: {reason}" if reason else None


def require_cuda(module: ModuleType | None = None) -> ModuleType:
    """The CUDA extension module, or :class:`CudaUnavailableError` with the reason."""
    reason = unavailable_reason(module)
    if reason:
        raise CudaUnavailableError(reason)
    return module or _module


class CudaFusedIDN(FusedEngines):
    """The IDN forward on the CUDA kernels: ``set_identity(weights)``, then ``run(batch)``.

    ``device``: the CUDA device index; ``graphs``: replay each batch size's 15 kernels from a
    captured CUDA graph (fewer launch gaps; falls back to plain launches, recorded in the
    engine's ``graph_error``, if capture fails). ``module`` replaces ``mfs_fast._cuda`` (tests
    pass the CPU-emulated build of the same sources). The pointwise form is always the factored one.

    Not a :class:`~mfs_fast.backends.fused.FusedIDN` and without its ``native_engine``: that is
    the CPU engine the C++ pipeline core runs on, and this one is not.
    """

    name = "fused-cuda"

    def __init__(self, models: FaceSwapModels, device: int = 0, graphs: bool = True,
                 module: ModuleType | None = None) -> None:
        self._cuda = require_cuda(module)
        self.device = int(device)
        self.graphs = bool(graphs)
        super().__init__(models, "factored")

    def _new_engine(self, height: int, width: int):
        return self._cuda.CudaFusedIDN(height, width, self._heads, self._bases, device=self.device, graphs=self.graphs)

    def _run_engine(self, engine, batch: np.ndarray, faces: np.ndarray, masks: np.ndarray) -> None:
        engine.run(batch, faces, masks)

    def engine(self, height: int, width: int):
        """The native engine for one input size (timing: ``last_run_ms``, ``time_kernels``, ``stage_ms``)."""
        return self._engine(height, width)


@register_backend("fused-cuda", probe=unavailable_reason)
def create_fused_cuda(models: FaceSwapModels, threads: int | None = None, device: int = 0,
                      graphs: bool = True) -> CudaFusedIDN:
    """``threads`` is accepted like every backend's and unused: the GPU runs the work."""
    del threads
    return CudaFusedIDN(models, device=device, graphs=graphs)
