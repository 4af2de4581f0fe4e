"""The ``fused`` backend: the IDN on mfs_fast's own fused C++ kernels (issue #5, CPU).

:class:`FusedIDN` follows the backend contract (``set_identity``, ``run``; see
:mod:`mfs_fast.backends.base`); what it shares with the CUDA engine (folded heads, identity
hand-over, one engine per input size) is :class:`~mfs_fast.backends.fused_base.FusedEngines`.
It is the one backend with a native CPU engine (:meth:`FusedIDN.native_engine`), so the C++
pipeline core (:mod:`mfs_fast.backends.pipeline_core`) can run whole frames on it.
"""

from __future__ import annotations

import os

import numpy as np

from .. import native
from ..models import FaceSwapModels
from ..native import require_native
from ._registry import register_backend
from .fused_base import POINTWISE_FORMS, FusedEngines, fold_batchnorm, head_weights

__all__ = ["POINTWISE_FORMS", "PRECISIONS", "FusedIDN", "bfloat16_available", "check_precision", "default_threads",
           "fold_batchnorm", "head_weights"]


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


PRECISIONS = ("float32", "bfloat16")


def check_precision(precision: str) -> str:
    """``precision`` if it names one of :data:`PRECISIONS`; ValueError otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def bfloat16_available() -> bool:
    """Whether this CPU runs the bf16 kernels (AVX512-BF16, the C++ core built)."""
    return native.AVAILABLE and native.require_native().bf16_isa() is not None


def _probe() -> str | None:
    return None if native.AVAILABLE else native.IMPORT_ERROR


@register_backend("fused", probe=_probe)
class FusedIDN(FusedEngines):
    """The IDN forward on the fused kernels: ``set_identity(weights)``, then ``run(batch)``.

    ``threads``: worker threads (default: the CPUs this process may use); ``isa``: "auto" (the
    best kernel set for this CPU; ``MFS_FAST_ISA`` overrides), "avx2", "neon" or "scalar".
    ``precision``: "float32" (default: the reference's results to ~1e-5), or "bfloat16": the
    pointwise layers multiply in bf16 with float32 sums, on CPUs with AVX512-BF16 (faster, and
    within ~1/255 of float32 on the output; see :data:`PRECISIONS`).
    Raises :class:`NativeUnavailableError` when the C++ extension is not built.
    """

    name = "fused"

    def __init__(self, models: FaceSwapModels, threads: int | None = None, pointwise: str = "factored",
                 isa: str = "auto", precision: str = "float32") -> None:
        if pointwise not in POINTWISE_FORMS:
            raise ValueError(f"pointwise must be one of {POINTWISE_FORMS}, got {pointwise!r}")
        self._native = require_native()
        self.threads = int(threads) if threads else default_threads()
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        super().__init__(models, pointwise)
        self.isa = self._kernel_set(isa, check_precision(precision))
        self.precision = precision

    def _kernel_set(self, isa: str, precision: str) -> str:
        if precision == "bfloat16":
            bf16 = self._native.bf16_isa()
            if bf16 is None:
                raise ValueError("precision 'bfloat16' needs a CPU with AVX512-BF16 (this one lacks it); "
                                 "use precision 'float32'")
            if isa not in ("auto", bf16):
                raise ValueError(f"precision 'bfloat16' runs on the {bf16!r} kernels, not isa {isa!r}")
            return bf16
        available = self._native.isas()
        resolved = self._native.default_isa() if isa == "auto" else isa
        if resolved not in available:
            raise ValueError(f"isa {isa!r} cannot run here (available: {', '.join(available)})")
        return resolved

    def native_engine(self, height: int, width: int | None = None, replica: int = 0):
        """The native engine for this input size (made on first use). Identity changes made
        through :meth:`set_identity` reach it; the pipeline core runs on it. ``replica`` > 0: one
        more engine of that size, for a second thread (one engine runs one call at a time)."""
        return self._engine(int(height), int(height if width is None else width), int(replica))

    def _new_engine(self, height: int, width: int):
        return self._native.FusedIDN(height, width, self._heads, self._bases, self.isa)

    def _run_engine(self, engine, batch: np.ndarray, faces: np.ndarray, masks: np.ndarray) -> None:
        engine.run(batch, faces, masks, self.threads)
