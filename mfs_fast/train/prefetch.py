"""A training step's inputs, prepared one step ahead in a background thread where that helps.

Why: drawing the groups (JPEG decode, affine augmentation) and the mesh-warp teacher are
NumPy/OpenCV work that releases the GIL; run in a thread while the previous step's forward and
backward run, they cost the step little when the thread has a core of its own (a GPU machine).
On a CPU whose every core already runs the step's OpenMP threads, the thread's work preempts
them mid-region and the step waits at their barriers: on the 2-core dev VM the thread made a
step 1.1-1.55x slower in every mode measured, not faster (bench/RESULTS.md), so ``auto`` runs
it only where it has a core to spare. The thread is the only user of the sampler's and cache's random generators
while it runs, so the data order stays exactly the one a serial loop draws.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from .data import PairGroup, PairSampler
from .teacher import Teacher


@dataclass
class StepInputs:
    """The groups of one step and, per group, the teacher's outputs for the rows that use them."""

    groups: list[PairGroup]
    teacher_rows: list[torch.Tensor]  # per group: indices of its targets the teacher swapped
    teacher_out: list[torch.Tensor | None]  # per group: len(rows) x 3 x S x S, or None


def distilled_rows(group: PairGroup) -> torch.Tensor:
    """The teacher only where its output is used: cross pairs whose pixels may be targets."""
    return torch.nonzero(~group.reconstruction & group.pixel_target).flatten()


class GroupTeacher(Protocol):
    def swaps(self, group: PairGroup, rows: torch.Tensor) -> torch.Tensor:
        """The teacher's swaps of the group's source onto its targets ``rows`` (len x 3 x S x S)."""
        ...


class LiveTeacher:
    """The teacher run on the augmented crops of every pair, every time."""

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher

    def swaps(self, group: PairGroup, rows: torch.Tensor) -> torch.Tensor:
        return self.teacher(group.source, group.targets[rows], group.source_points, group.target_points[rows])


def prepare_step(sampler: PairSampler, groups: int, teacher: GroupTeacher | None) -> StepInputs:
    drawn = [sampler.group() for _ in range(groups)]
    rows, outs = [], []
    for group in drawn:
        wanted = distilled_rows(group) if teacher is not None else torch.zeros(0, dtype=torch.long)
        rows.append(wanted)
        outs.append(teacher.swaps(group, wanted) if len(wanted) else None)
    return StepInputs(drawn, rows, outs)


PREFETCH_SETTINGS = ("auto", "thread", "off")


def prefetch_in_thread(setting: str, device: torch.device, cores: int | None = None,
                       torch_threads: int | None = None) -> bool:
    """Whether the next step's inputs are prepared in a thread: ``thread`` / ``off``, or
    ``auto``: on CUDA, or when the CPU has more cores than the step's torch threads."""
    if setting != "auto":
        return setting == "thread"
    if device.type == "cuda":
        return True
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores > (torch_threads if torch_threads is not None else torch.get_num_threads())


class Prefetcher:
    """``next()`` returns the prepared inputs and starts preparing the following ones."""

    def __init__(self, prepare: Callable[[], StepInputs], enabled: bool = True) -> None:
        self.prepare = prepare
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mfs-prefetch") if enabled else None
        self.pending: Future | None = None

    def next(self) -> StepInputs:
        if self.pool is None:
            return self.prepare()
        inputs = self.pending.result() if self.pending is not None else self.prepare()
        self.pending = self.pool.submit(self.prepare)
        return inputs

    def drain(self) -> StepInputs | None:
        """Wait for the step in flight (before anything else draws from the sampler); it is
        kept and handed out by the next ``next()``, so no drawn data is skipped."""
        if self.pending is None:
            return None
        inputs = self.pending.result()
        self.pending = _done(inputs)
        return inputs

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future
