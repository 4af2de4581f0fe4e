"""What a batch worker does, whatever runs it (a local process, a Ray actor): hold one
:class:`~mfs_fast.pipeline.Swapper` (weights loaded and the batch's identity computed once per worker,
not per item) and swap tasks with it, one at a time.

A task is a whole image or video, or one part of a split video (:mod:`.segments`). A task that fails
on its own input (unreadable, no video stream, a row's source without a face) comes back as a failed
:class:`Outcome` with the error's one line; the worker goes on with the next. Only a worker that
cannot start at all (bad weights, no face in the batch's source) stops the batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MfsError


@dataclass(frozen=True)
class SwapSettings:
    """Everything a worker needs to build its Swapper and write videos: plain values, picklable."""

    source: Path
    weights: str | None = None
    reference: Path | None = None
    swapper_options: dict[str, Any] = field(default_factory=dict)  # Swapper keywords (backend, faces, ...)
    every: int = 5
    quality: int | None = None
    preset: str | None = None


@dataclass(frozen=True)
class Task:
    """Swap ``input`` into ``output``; ``part``: which part of a split video (None: the whole file)."""

    key: str  # the item's key (results.jsonl)
    input: Path
    output: Path
    source: Path | None = None
    reference: Path | None = None
    part: int | None = None
    frames: int = 1  # expected, for the progress bar


@dataclass
class Outcome:
    """What a worker reports for one task."""

    ok: bool
    faces: int = 0
    frames: int = 0
    seconds: float = 0.0
    error: str | None = None


class SwapWorker:
    """One Swapper, reused for every task; a row's own source or reference is switched in (identity
    net + IIN only, nothing rebuilt) and kept until a row asks for another."""

    def __init__(self, settings: SwapSettings, threads: int | None = None):
        import torch

        from ..pipeline import Swapper

        if threads:
            torch.set_num_threads(threads)
        self.settings = settings
        self.swapper = Swapper(settings.source, settings.weights, reference=settings.reference, threads=threads,
                               **settings.swapper_options)
        self._source, self._reference = settings.source, settings.reference

    def run(self, task: Task) -> Outcome:
        """Swap one task; its own errors become a failed Outcome (interrupts go through)."""
        start = time.perf_counter()
        stats = self.swapper.stats
        frames, faces = stats.frames, stats.faces_swapped
        try:
            self._use(task.source or self.settings.source, task.reference or self.settings.reference)
            if task.part is None and _kind(task.input) == "image":
                self.swapper.swap_image(task.input, task.output, inputs=self._inputs(task))
            else:
                self._video(task)
        except (MfsError, OSError) as error:
            return Outcome(False, seconds=time.perf_counter() - start, error=_one_line(error))
        return Outcome(True, stats.faces_swapped - faces, stats.frames - frames, time.perf_counter() - start)

    def _use(self, source: Path, reference: Path | None) -> None:
        if source != self._source:
            self.swapper.set_source(source)
            self._source = source
        if reference != self._reference:
            self.swapper.set_reference(reference)
            self._reference = reference

    def _video(self, task: Task) -> None:
        from ..media.writer import DEFAULT_CRF

        settings = self.settings
        self.swapper.swap_video(task.input, task.output, every=settings.every, progress=False,
                                quality=DEFAULT_CRF if settings.quality is None else settings.quality,
                                preset=settings.preset)

    def _inputs(self, task: Task) -> tuple[Path, ...]:
        return tuple(p for p in (self._source, self._reference) if p is not None)


def _kind(path: Path) -> str:
    from ..media import media_kind

    return media_kind(path)


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename:
        text = f"{error.strerror or error}: {error.filename}"
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
