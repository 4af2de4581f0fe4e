"""IDN runtimes behind one interface: ``create_backend(name_or_preference_list, models)``."""

from . import (  # noqa: F401  (importing registers the backends)
    fused_backend,
    fused_cuda_backend,
    onnxruntime_backend,
    tensorrt_backend,
    torch_backend,
    tvm_backend,
    tvm_fused,
)
from .base import (
    DEFAULT_BACKEND,
    DEFAULT_PREFERENCE,
    Backend,
    BackendUnavailable,
    available_backends,
    backend_report,
    create_backend,
    register_backend,
)

__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_PREFERENCE",
    "Backend",
    "BackendUnavailable",
    "available_backends",
    "backend_report",
    "create_backend",
    "register_backend",
]
