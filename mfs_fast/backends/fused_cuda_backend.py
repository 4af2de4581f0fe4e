"""The ``fused-cuda`` backend: the fused blocks as CUDA kernels (mfs_fast.cuda_fused).

Usable where ``mfs_fast._cuda`` was built (nvcc at install time) and a CUDA GPU is visible;
otherwise the probe gives the module's own reason (not built, no driver, no device).
"""

from __future__ import annotations

from ..cuda_fused import CudaFusedIDN, unavailable_reason
from ..models import FaceSwapModels
from .base import register_backend


@register_backend("fused-cuda", probe=unavailable_reason)
def create_fused_cuda(models: FaceSwapModels, threads: int | None = None, device: int = 0,
                      graphs: bool = True) -> CudaFusedIDN:
    """``threads`` is accepted like every backend's and unused: the GPU runs the work."""
    del threads
    return CudaFusedIDN(models, device=device, graphs=graphs)
