"""Resident memory of this process, now and sampled over a run (Linux ``/proc``; elsewhere the peak only).

Why sampled: ``ru_maxrss`` is the peak over the whole process life, so it cannot show a second
run's peak, nor whether memory grows while a long video streams through; samples can.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Callable

_STATM = Path("/proc/self/statm")
_STATUS = Path("/proc/self/status")


def rss_bytes() -> int:
    """Resident memory now (Linux), or the process's peak so far where ``/proc`` is missing."""
    try:
        return int(_STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def anonymous_bytes() -> int:
    """Resident memory that is this process's own (Linux ``RssAnon``: heap, arrays, weights), or
    :func:`rss_bytes` where ``/proc`` is missing. Unlike the whole resident set, it does not depend
    on how much of the shared libraries' clean file pages the page cache happens to hold (torch
    and OpenCV: ~140 MB on a machine that has been running, ~240 MB right after installing)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return rss_bytes()


def return_freed_memory() -> None:
    """Hand the allocator's free pages back to the system (glibc ``malloc_trim``; elsewhere
    nothing): after large objects are freed, e.g. :meth:`~mfs_fast.models.FaceSwapModels.release_source_nets`,
    glibc keeps their pages in its heap for reuse, and they still count as resident."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is not None:
        trim(0)


class RssSampler:
    """``with RssSampler() as rss: ...`` samples ``measure`` (default :func:`rss_bytes`) every
    ``interval`` seconds in a thread; ``rss.samples`` holds ``(seconds since start, bytes)``,
    ``rss.peak`` the largest."""

    def __init__(self, interval: float = 0.05, measure: Callable[[], int] = rss_bytes) -> None:
        self.interval = interval
        self.measure = measure
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="mfs-rss", daemon=True)

    @property
    def peak(self) -> int:
        return max((value for _, value in self.samples), default=0)

    def _sample(self) -> None:
        start = time.perf_counter()
        while True:
            self.samples.append((time.perf_counter() - start, self.measure()))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((self.samples[-1][0] if self.samples else 0.0, self.measure()))
