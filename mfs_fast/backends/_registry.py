"""The backend registry: every IDN runtime registers here by name, with a probe saying why it cannot run.

Private, as in timm: users call :func:`register_backend`, :func:`available_backends` and
:func:`backend_report` through :mod:`mfs_fast.backends`; building one is :mod:`._factory`'s job.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..registry import Probe, Registry, always_available
from .base import DEFAULT_PREFERENCE, Backend, BackendUnavailable

BACKENDS: Registry[Backend] = Registry("backend", error=BackendUnavailable)


def register_backend(name: str, probe: Probe = always_available) -> Callable:
    """Class or factory decorator: make a backend constructible by name; ``probe`` says why it cannot run."""
    return BACKENDS.register(name, probe)


def available_backends() -> list[str]:
    """Registered backends usable on this machine."""
    return BACKENDS.available()


def backend_report(preference: Sequence[str] = DEFAULT_PREFERENCE) -> list[tuple[str, bool, str]]:
    """(name, usable, reason) for every backend named in ``preference`` or registered."""
    return BACKENDS.report(preference)
