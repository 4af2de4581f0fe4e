"""Side-by-side IDN latency per backend, interleaved so machine noise hits them all alike."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..models import FaceSwapModels
from ._registry import BACKENDS


@dataclass(frozen=True)
class Timing:
    backend: str
    threads: int
    size: int
    batch: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    set_identity_ms: float
    max_abs_diff: float  # against the torch backend on the same input

    def as_dict(self) -> dict:
        return asdict(self)


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def benchmark_backends(names: list[str], size: int = 224, batch: int = 1, threads: tuple[int, ...] = (1, 2),
                       rounds: int = 30, warmup: int = 3, seed: int = 0) -> list[Timing]:
    """Time ``names`` at each thread count (random weights: speed does not depend on them)."""
    models = FaceSwapModels.random(seed)
    weights = models.identity_weights(torch.rand(1, 3, 112, 112))
    image = np.random.default_rng(seed).random((batch, 3, size, size), dtype=np.float32)
    reference = BACKENDS.create("torch", models)
    reference.set_identity(weights)
    expected = reference.run(image)[0].copy()
    results = []
    previous = torch.get_num_threads()
    try:
        for n in threads:
            torch.set_num_threads(n)
            backends = {name: BACKENDS.create(name, models, threads=n) for name in names}
            switch = {name: _time(lambda b=b: b.set_identity(weights)) for name, b in backends.items()}
            diffs = {name: float(np.abs(b.run(image)[0] - expected).max()) for name, b in backends.items()}
            samples: dict[str, list[float]] = {name: [] for name in backends}
            for i in range(warmup + rounds):
                for name, backend in backends.items():
                    elapsed = _time(lambda: backend.run(image))
                    if i >= warmup:
                        samples[name].append(elapsed)
            for name, values in samples.items():
                deciles = statistics.quantiles(values, n=10)
                results.append(Timing(name, n, size, batch, statistics.median(values), deciles[0], deciles[-1],
                                      switch[name], diffs[name]))
    finally:
        torch.set_num_threads(previous)
    return results
