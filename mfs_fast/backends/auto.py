"""``backend="auto"``: the fastest usable backend on this machine, measured once and cached.

Speed does not depend on weight values, so the measurement uses random models and holds for
any weights. The cache key covers the machine, the library versions and the thread count.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path

import torch

from .._version import __version__
from ..atomic import atomic_write
from . import benchmark
from ._cache import cache_dir
from ._registry import available_backends

log = logging.getLogger("mfs_fast.backends")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> str:
    parts = [f"mfs_fast {__version__}", f"torch {torch.__version__}"]
    try:
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        pass
    return ", ".join(parts)


def cache_key(names: list[str], threads: int) -> str:
    return f"{platform.machine()} | {_cpu_model()} | {os.cpu_count()} cpus | {threads} threads | " \
           f"{_versions()} | {','.join(sorted(names))}"


def fastest_backend(threads: int | None = None, rounds: int = 15) -> str:
    """Name of the fastest usable backend (IDN, batch 1, 224), from the cache when measured before."""
    names = available_backends()
    if len(names) == 1:
        return names[0]
    threads = threads or torch.get_num_threads()
    path = cache_dir() / "auto_backend.json"
    key = cache_key(names, threads)
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached:
        return cached[key]["backend"]
    timings = benchmark.benchmark_backends(names, threads=(threads,), rounds=rounds)
    best = min(timings, key=lambda t: t.median_ms)
    medians = {t.backend: round(t.median_ms, 2) for t in timings}
    log.info("backend auto: measured %s ms (median, IDN batch 1, 224); using %s", medians, best.backend)
    cached[key] = {"backend": best.backend, "median_ms": medians}
    atomic_write(path, json.dumps(cached, indent=1))
    return best.backend
