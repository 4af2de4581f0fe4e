"""``create_backend``: a name, an ordered preference list or "auto" -> a built backend.

Like ONNX Runtime's providers, callers may give an ordered preference list; a skipped backend is
logged once with its reason, or is an error with ``strict=True``.
"""

from __future__ import annotations

import logging
from typing import Sequence

from ..errors import MfsError
from ..models import FaceSwapModels
from ._registry import BACKENDS
from .base import Backend, BackendUnavailable

log = logging.getLogger("mfs_fast.backends")
_LOGGED: set[str] = set()  # fallback reasons already reported in this process


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
        reason = BACKENDS.unavailable_reason(name)
        if reason is None:
            try:
                return BACKENDS.create(name, models, **options)
            except BackendUnavailable as error:  # found out only while building it
                reason = str(error)
        if strict or len(names) == 1:
            raise BackendUnavailable(f"backend {name!r} cannot be used: {reason}")
        reasons.append(f"{name}: {reason}")
        if name not in _LOGGED:
            _LOGGED.add(name)  # not-implemented names are routine in the default list: INFO
            log.log(logging.WARNING if name in BACKENDS else logging.INFO, "backend %r skipped: %s", name, reason)
    raise BackendUnavailable("no usable backend: " + "; ".join(reasons))
