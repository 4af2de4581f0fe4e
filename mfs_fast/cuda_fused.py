"""The IDN on mfs_fast's own CUDA kernels (issue #5, GPU): ``mfs_fast._cuda``, ``kernels/cuda/``.

:class:`CudaFusedIDN` follows the backend contract (``set_identity``, ``run``; see
:mod:`mfs_fast.backends.base`) and works as the CPU :class:`~mfs_fast.fused.FusedIDN` with another
engine: the same folded heads (:func:`~mfs_fast.fused.head_weights`), the same identity
conversion (factored pointwise form: the base kernels ``W`` are uploaded once, an identity hands
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

from .backends.base import checked_batch
from .errors import MfsError
from .fused import FusedIDN, _array, head_weights

BUILD_HINT = (
    "mfs_fast._cuda (the CUDA kernels) is not built: it is built by `pip install -e . --no-build-isolation` "
    "(or ./run.sh) only when the CUDA compiler nvcc is on PATH at install time"
)

try:
    from . import _cuda as _module
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


class CudaFusedIDN:
    """The IDN forward on the CUDA kernels: ``set_identity(weights)``, then ``run(batch)``.

    ``device``: the CUDA device index; ``graphs``: replay each batch size's 15 kernels from a
    captured CUDA graph (fewer launch gaps; falls back to plain launches, recorded in the
    engine's ``graph_error``, if capture fails). ``module`` replaces ``mfs_fast._cuda`` (tests
    pass the CPU-emulated build of the same sources).

    Not a subclass of :class:`FusedIDN` (code that finds a ``FusedIDN`` hands its CPU engine to
    the C++ pipeline core), but it runs FusedIDN's own identity code: ``set_identity`` and the
    base-kernel check are FusedIDN's functions, over the same attributes.
    """

    name = "fused-cuda"
    set_identity = FusedIDN.set_identity
    _check_bases = FusedIDN._check_bases
    _engine = FusedIDN._engine  # the per-size engine cache; only _new_engine differs
    _apply = FusedIDN._apply  # pointwise is always "factored" here

    def __init__(self, models, device: int = 0, graphs: bool = True, module: ModuleType | None = None) -> None:
        # FusedIDN's state (what its set_identity and _check_bases use), less its CPU options
        # (threads, ISA; the pointwise form is always the factored one)
        self._cuda = require_cuda(module)
        self.device = int(device)
        self.graphs = bool(graphs)
        self.pointwise = "factored"
        self._heads = head_weights(models)
        mods = (*models.iin.encoder_modulation, *models.iin.decoder_modulation)
        self._base_params = [m.weight for m in mods]  # to recognise identities made by this IIN
        self._bases = [_array(p.reshape(p.shape[0], -1)) for p in self._base_params]
        self._engines: dict[tuple[int, int], object] = {}
        self._identity: tuple | None = None
        self._custom_bases: dict[int, np.ndarray] = {}

    def _new_engine(self, height: int, width: int):
        return self._cuda.CudaFusedIDN(height, width, self._heads, self._bases, device=self.device, graphs=self.graphs)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aligned RGB float32 batch N x 3 x S x S in [0, 1] -> (faces N x 3 x S x S, masks N x 1 x S x S)."""
        batch = checked_batch(batch, self._identity is not None)
        n, _, h, w = batch.shape
        engine = self._engine(h, w)  # ValueError from the binding for sides not multiple of 32
        faces = np.empty((n, 3, h, w), np.float32)
        masks = np.empty((n, 1, h, w), np.float32)
        engine.run(batch, faces, masks)
        return faces, masks

    def engine(self, height: int, width: int):
        """The native engine for one input size (timing: ``last_run_ms``, ``time_kernels``, ``stage_ms``)."""
        return self._engine(height, width)
