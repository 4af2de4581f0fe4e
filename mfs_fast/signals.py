"""SIGTERM as an interrupt, so ``kill`` (or a container stop) runs the same cleanup as Ctrl-C."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived inside :func:`terminate_raises_interrupt` (a KeyboardInterrupt, so every
    ``finally`` and ``except BaseException`` cleanup runs, e.g. the video writer's)."""


@contextmanager
def terminate_raises_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread; the previous
    handler is restored after. A no-op off the main thread (only it may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame) -> None:
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
