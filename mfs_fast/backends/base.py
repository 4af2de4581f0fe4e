"""The one interface every IDN runtime implements, a registry, and provider-style selection.

A backend is built once for a set of models (``compile/load`` happen in its constructor),
receives an identity with ``set_identity`` (a copy into existing weight buffers: never a
rebuild) and then runs aligned batches. Like ONNX Runtime's providers, callers may give an
ordered preference list; a skipped backend is logged once with its reason, or is an error
with ``strict=True``.
"""

from __future__ import annotations

import logging
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import MfsError
from ..models import FaceSwapModels, IdentityWeights

log = logging.getLogger("mfs_fast.backends")

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


def checked_batch(batch: np.ndarray, has_identity: bool) -> np.ndarray:
    """The common start of every ``run``: an identity must be set; the batch becomes C-contiguous float32."""
    if not has_identity:
        raise MfsError("backend has no identity yet: call set_identity(weights) first")
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise MfsError(f"expected an aligned RGB batch N x 3 x S x S, got shape {batch.shape}")
    return batch


class BackendEntry:
    """How to build a backend, and how to tell cheaply whether it can run here."""

    def __init__(self, name: str, factory: Callable[..., Backend], probe: Callable[[], str | None]):
        self.name, self.factory, self.probe = name, factory, probe

    def unavailable_reason(self) -> str | None:
        """None when usable here, else why not."""
        return self.probe()


_REGISTRY: dict[str, BackendEntry] = {}
_LOGGED: set[str] = set()  # fallback reasons already reported in this process


def register_backend(name: str, probe: Callable[[], str | None] = lambda: None):
    """Class decorator: make a backend constructible by name; ``probe`` says why it cannot run."""

    def decorate(factory):
        _REGISTRY[name] = BackendEntry(name, factory, probe)
        return factory

    return decorate


def available_backends() -> list[str]:
    """Registered backends usable on this machine."""
    return [name for name, entry in _REGISTRY.items() if entry.unavailable_reason() is None]


def backend_report(preference: Sequence[str] = DEFAULT_PREFERENCE) -> list[tuple[str, bool, str]]:
    """(name, usable, reason) for every backend named in ``preference`` or registered."""
    names = list(dict.fromkeys([*preference, *_REGISTRY]))
    report = []
    for name in names:
        entry = _REGISTRY.get(name)
        reason = "not implemented in this version" if entry is None else entry.unavailable_reason()
        report.append((name, reason is None, reason or "ok"))
    return report


def create_backend(preference: str | Sequence[str], models: FaceSwapModels, strict: bool = False,
                   **options) -> Backend:
    """The first usable backend of ``preference`` (a name or an ordered list), or with
    ``"auto"`` the fastest usable one on this machine (measured once, then cached).

    Skipped backends are logged with their reason; with ``strict=True`` the first one that
    cannot be used is an error instead of a fallback.
    """
    names = [preference] if isinstance(preference, str) else list(preference)
    if names == ["auto"]:
        from .auto import fastest_backend

        names = [fastest_backend(options.get("threads"))]
    if not names:
        raise MfsError("no backend requested")
    reasons = []
    for name in names:
        entry = _REGISTRY.get(name)
        try:
            if entry is None:
                raise BackendUnavailable(f"unknown backend {name!r}: not implemented in this version "
                                         f"(known: {', '.join(sorted(_REGISTRY))})")
            reason = entry.unavailable_reason()
            if reason is not None:
                raise BackendUnavailable(reason)
            return entry.factory(models, **options)
        except BackendUnavailable as error:
            if strict or len(names) == 1:
                raise BackendUnavailable(f"backend {name!r} cannot be used: {error}") from None
            reasons.append(f"{name}: {error}")
            if name not in _LOGGED:
                _LOGGED.add(name)  # not-implemented names are routine in the default list: INFO
                log.log(logging.INFO if entry is None else logging.WARNING, "backend %r skipped: %s", name, error)
    raise BackendUnavailable("no usable backend: " + "; ".join(reasons))
