"""IDN runtimes behind one interface: ``create_backend(name_or_preference_list, models)``.

Every runtime lives in this package: the interface (``base``), the registry (``_registry``) and
the factory (``_factory``), the cache folder (``_cache``), one module per runtime, ``auto`` and
``benchmark``. Importing the package registers every runtime.
"""

from . import (  # noqa: F401  (importing registers the backends)
    fused,
    fused_cuda,
    onnxruntime_backend,
    tensorrt_backend,
    torch_backend,
    tvm_backend,
    tvm_fused,
)
from ._factory import create_backend
from ._registry import available_backends, backend_report, register_backend
from .base import DEFAULT_BACKEND, DEFAULT_PREFERENCE, Backend, BackendUnavailable, NativeEngine

__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_PREFERENCE",
    "Backend",
    "BackendUnavailable",
    "NativeEngine",
    "available_backends",
    "backend_report",
    "create_backend",
    "register_backend",
]
