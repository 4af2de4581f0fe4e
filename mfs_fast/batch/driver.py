"""The batch's one driver, whichever engine runs the workers: hands out tasks, retries what a dead
worker held, joins split videos, writes each result line as it finishes, and draws the progress bar.

Engines (:mod:`.local`, :mod:`.ray_engine`) only own workers: they ask :meth:`Driver.next_task` for
work, report :meth:`Driver.done` with a worker's :class:`~.work.Outcome`, or :meth:`Driver.lost`
when the worker died holding the task (killed, out of memory, a machine gone). A lost task goes
back to the front of the queue up to ``retries`` times, after its unfinished temporaries are
removed; the final path is only ever written by an atomic rename, so it never holds half a file.
"""

from __future__ import annotations

import collections
import hashlib
import shutil
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from ..atomic import discard_pending
from ..errors import MfsError
from ..media.probe import VideoInfo
from . import segments
from .jobs import WORK_NAME, Item, Result, ResultsLog
from .work import Outcome, Task


@dataclass
class _Split:
    """A video cut into parts: where they start, and what came back so far."""

    item: Item
    info: VideoInfo
    starts: list[tuple[int, Fraction]]
    folder: Path
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    attempts: int = 1


@dataclass
class Summary:
    """What a batch did: items done, failed, skipped (already done, ``--resume``), frames, seconds."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    frames: int = 0
    seconds: float = 0.0


class Driver:
    """Tasks out, outcomes in, results.jsonl written; see the module docstring."""

    def __init__(self, items: list[Item], out_dir: Path, *, retries: int = 2, segment_seconds: float = 0.0,
                 progress: bool = True, skipped: int = 0, marked: bool = True):
        from tqdm.auto import tqdm

        self.out_dir = Path(out_dir)
        self.retries, self.segment_seconds, self.marked = retries, segment_seconds, marked
        self.summary = Summary(skipped=skipped)
        self.log = ResultsLog(self.out_dir)
        self._items = collections.deque(items)
        self._total = len(items)
        self._queue: collections.deque[Task] = collections.deque()
        self._attempts: dict[Task, int] = {}
        self._in_flight: set[Task] = set()
        self._splits: dict[str, _Split] = {}
        self._started = time.perf_counter()
        self._kinds: dict[str, tuple[str, VideoInfo | None]] = {}
        frames = sum(self._probe(item) for item in items)
        self.bar = tqdm(total=frames, unit="frame", desc="batch", disable=not progress, dynamic_ncols=True)
        self._show()

    # -- what engines call

    def next_task(self) -> Task | None:
        """The next task to run, or None when nothing is waiting now (some may still be in flight)."""
        while not self._queue and self._items:
            self._expand(self._items.popleft())
        if not self._queue:
            return None
        task = self._queue.popleft()
        self._attempts[task] = self._attempts.get(task, 0) + 1
        self._in_flight.add(task)
        return task

    def busy(self) -> bool:
        """True while any task is waiting or running."""
        return bool(self._queue or self._items or self._in_flight)

    def done(self, task: Task, outcome: Outcome) -> None:
        """A worker finished ``task`` (well or with its input's error)."""
        self._in_flight.discard(task)
        self.bar.update(task.frames)
        if task.part is None:
            self._record(task.key, task.input, task.output, outcome, self._attempts.get(task, 1))
            return
        split = self._splits[task.key]
        split.outcomes[task.part] = outcome
        split.attempts = max(split.attempts, self._attempts.get(task, 1))
        if len(split.outcomes) == len(split.starts):
            self._join(split)

    def lost(self, task: Task, reason: str) -> None:
        """The worker holding ``task`` died: remove its unfinished files, retry it or give up."""
        self._in_flight.discard(task)
        discard_pending(task.output)
        attempts = self._attempts.get(task, 1)
        if attempts <= self.retries:
            self._queue.appendleft(task)
            return
        self.done(task, Outcome(False, error=f"the worker died on it {attempts} time(s) ({reason}); "
                                             f"it was not retried again"))

    def close(self) -> None:
        """Remove what unfinished tasks left (their temporaries, split parts); close the log and bar.
        Safe after an interrupt: finished outputs and their result lines stay."""
        for task in self._in_flight | set(self._queue):
            discard_pending(task.output)
        shutil.rmtree(self.out_dir / WORK_NAME, ignore_errors=True)
        self.summary.seconds = time.perf_counter() - self._started
        self.bar.close()
        self.log.close()

    # -- items into tasks

    def _probe(self, item: Item) -> int:
        """Kind and (video) facts of an item, for the frame total; a damaged input is remembered and
        fails when its turn comes."""
        from ..media import media_kind, probe_video

        try:
            kind = media_kind(item.input)
            info = probe_video(item.input) if kind == "video" else None
        except MfsError as error:
            self._kinds[item.key] = ("error", str(error))
            return 1
        self._kinds[item.key] = (kind, info)
        return (info.frame_count or 1) if info is not None else 1

    def _expand(self, item: Item) -> None:
        kind, info = self._kinds[item.key]
        whole = Task(item.key, item.input, item.output, item.source, item.reference,
                     frames=(info.frame_count or 1) if kind == "video" else 1)
        if kind == "error":
            self.bar.update(1)
            self._record(item.key, item.input, item.output, Outcome(False, error=info), 0)
            return
        starts = self._split_points(item, info) if kind == "video" else []
        if not starts:
            self._queue.append(whole)
            return
        folder = self.out_dir / WORK_NAME / hashlib.sha1(item.key.encode()).hexdigest()[:16]
        try:
            parts = segments.split(item.input, starts, folder / "in")
        except MfsError:  # cannot split: swap it whole instead
            shutil.rmtree(folder, ignore_errors=True)
            self._queue.append(whole)
            return
        self._splits[item.key] = _Split(item, info, starts, folder)
        ends = [number for number, _ in starts[1:]] + [info.frame_count]
        for index, (part, (first, _)) in enumerate(zip(parts, starts)):
            self._queue.append(Task(item.key, part, folder / f"swapped_{index:04d}.mp4", item.source, item.reference,
                                    part=index, frames=ends[index] - first))

    def _split_points(self, item: Item, info: VideoInfo) -> list[tuple[int, Fraction]]:
        if self.segment_seconds <= 0 or info.frame_count is None or info.frame_count < 2 * self.segment_seconds * info.fps:
            return []  # what plan() would say, without reading the packets
        try:
            return segments.plan(info, segments.keyframes(item.input), self.segment_seconds)
        except MfsError:
            return []

    def _join(self, split: _Split) -> None:
        """All parts are back: join them (or report the first part's error) and record the item."""
        item, outcomes = split.item, [split.outcomes[i] for i in range(len(split.starts))]
        failed = next((o for o in outcomes if not o.ok), None)
        outcome = Outcome(True, sum(o.faces for o in outcomes), sum(o.frames for o in outcomes),
                          sum(o.seconds for o in outcomes))
        if failed is not None:
            outcome = Outcome(False, error=failed.error)
        else:
            from ..watermark.metadata import VIDEO_TAGS

            parts = [split.folder / f"swapped_{i:04d}.mp4" for i in range(len(outcomes))]
            try:
                segments.join(parts, split.starts, item.output, split.info, item.input,
                              tags=VIDEO_TAGS if self.marked else None)
            except MfsError as error:
                outcome = Outcome(False, error=str(error))
        shutil.rmtree(split.folder, ignore_errors=True)
        del self._splits[item.key]
        self._record(item.key, item.input, item.output, outcome, split.attempts)

    # -- results

    def _record(self, key: str, src: Path, dst: Path, outcome: Outcome, attempts: int) -> None:
        result = Result(str(src), key, "done" if outcome.ok else "failed", outcome.faces, outcome.frames,
                        round(outcome.seconds, 3), outcome.error, attempts)
        self.log.write(result)
        if outcome.ok:
            self.summary.done += 1
            self.summary.frames += outcome.frames
        else:
            self.summary.failed += 1
        self._show()

    def _show(self) -> None:
        finished = self.summary.done + self.summary.failed
        failed = f", {self.summary.failed} failed" if self.summary.failed else ""
        self.bar.set_postfix_str(f"items {finished}/{self._total}{failed}", refresh=True)
