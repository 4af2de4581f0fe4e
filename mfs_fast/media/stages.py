"""Stages of a frame stream that overlap: each in a thread of its own, joined by bounded queues.

Why threads: the heavy work of every stage runs outside the GIL (ffmpeg decodes and encodes in
processes of their own, PyTorch and the C++ pipeline core release it), so decoding frame n+2,
finding the faces of frame n+1 and swapping frame n can run at the same time. Why bounded queues:
memory stays at a handful of frames however long the video, and a slow stage holds the others
back instead of letting frames pile up. The last stage (the sink, e.g. the encoder) runs in the
calling thread, so Ctrl-C and errors land where the caller's ``with`` blocks clean up.

Each stage is timed (seconds in its own work, not waiting) and the queue in front of it is
sampled each time it takes an item, so a report can say which stage limits the frame rate: the
one busy the most per frame, with a full queue in front of it and empty ones after.

A stage whose work is :class:`Workers` runs in several threads (one callable each, e.g. each with
an engine of its own): consecutive items are worked on at once and handed on in their order.
Why: one stage busier than the others caps the frame rate while cores idle (720p, one face, 2
cores: the swap stage, bench/RESULTS.md).
"""

from __future__ import annotations

import queue
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

Stage = tuple[str, Callable[[Any], Any]]  # (name, item -> item)

_END = object()


@dataclass(frozen=True)
class Workers:
    """A stage's work for several threads: ``fns``, one callable a thread (each may hold state of
    its own, such as an engine). Items go to whichever thread is free and leave in their order.
    Called directly (the sequential path) it is the first callable."""

    fns: tuple[Callable[[Any], Any], ...]

    def __post_init__(self) -> None:
        if not self.fns:
            raise ValueError("Workers needs at least one callable")

    def __call__(self, item: Any) -> Any:
        return self.fns[0](item)


class _InOrder:
    """What the threads of one :class:`Workers` stage share: items are numbered as they are taken
    (one taker at a time) and handed on only in that order."""

    def __init__(self) -> None:
        self.taking = threading.Lock()
        self.turn = threading.Condition()
        self.taken = 0
        self.handed = 0
        self.finished = False  # the end (or a failure) was taken: nothing more to take


@dataclass
class StageTiming:
    """One stage's totals: ``seconds`` in its own work over ``items``; ``waiting`` summed over the
    items it took is the queue depth in front of it (items already there when it asked);
    ``threads`` working on it at once (:class:`Workers`)."""

    name: str
    seconds: float = 0.0
    items: int = 0
    waiting: int = 0
    threads: int = 1

    @property
    def ms_per_item(self) -> float:
        return 1e3 * self.seconds / self.items if self.items else 0.0

    @property
    def items_per_second(self) -> float:
        """The rate this stage allows on its own: its threads over its time per item."""
        return self.threads * self.items / self.seconds if self.seconds else float("inf")

    @property
    def mean_queue_depth(self) -> float:
        return self.waiting / self.items if self.items else 0.0


@dataclass
class _Failure:
    """An exception on its way downstream to the calling thread."""

    error: BaseException


@dataclass
class StagedRun:
    """``source`` items through ``stages`` into ``sink``: ``run()`` returns when all are consumed.

    ``threaded`` (default): the source and each stage in a thread of their own, ``depth`` items
    at most in each queue between them. ``threaded=False`` is the sequential path: only the
    source runs ahead in a thread (``depth`` items), the stages and the sink run one after the
    other in the calling thread. ``latest_only`` (live cameras): the source never waits; when the
    queue after it is full its oldest item is dropped (counted in ``dropped``), so the stages
    always get the newest frame rather than a backlog. Either way an exception in any stage is
    raised by ``run()`` in the calling thread, and every thread has stopped (and the source been
    closed) when ``run()`` returns or raises. ``timings``: the source (as ``source_name``), each stage, then the sink;
    ``done_at``: ``perf_counter()`` seconds at which the sink finished each item.
    """

    source: Iterator[Any]
    stages: Sequence[Stage]
    sink: Stage
    depth: int = 2
    threaded: bool = True
    source_name: str = "decode"
    latest_only: bool = False
    timings: list[StageTiming] = field(init=False)
    done_at: array = field(init=False)

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")
        names = [self.source_name, *(name for name, _ in self.stages), self.sink[0]]
        self.timings = [StageTiming(name) for name in names]
        self.done_at = array("d")
        self.dropped = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def run(self) -> None:
        threaded_stages = list(self.stages) if self.threaded else []
        inline_stages = [] if self.threaded else list(self.stages)
        queues = [queue.Queue(maxsize=self.depth) for _ in range(len(threaded_stages) + 1)]
        self._start(self._pump_source, queues[0], "source")
        shares: list[tuple[StageTiming, list[StageTiming]]] = []
        for index, (name, fn) in enumerate(threaded_stages):
            timing, source, out = self.timings[index + 1], queues[index], queues[index + 1]
            if not isinstance(fn, Workers):
                self._start(self._pump_stage, ((name, fn), timing, source, out), name)
                continue
            order, parts = _InOrder(), [StageTiming(name) for _ in fn.fns]
            timing.threads = len(parts)
            shares.append((timing, parts))
            for worker, (work, part) in enumerate(zip(fn.fns, parts)):
                self._start(self._pump_worker, (work, part, source, out, order), f"{name}-{worker}")
        try:
            self._consume(queues[-1], inline_stages)
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join()
            for timing, parts in shares:  # a Workers stage: its threads' work, summed
                for part in parts:
                    timing.seconds, timing.items, timing.waiting = (
                        timing.seconds + part.seconds, timing.items + part.items, timing.waiting + part.waiting)

    # -- threads

    def _start(self, target: Callable, args: Any, name: str) -> None:
        thread = threading.Thread(target=target, args=(args,), name=f"mfs-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _put(self, out: queue.Queue, item: object) -> bool:
        """Hand ``item`` on, waiting while the queue is full; False once the run is stopping."""
        while not self._stop.is_set():
            try:
                out.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, source: queue.Queue, timing: StageTiming) -> object:
        timing.waiting += source.qsize()
        while True:
            try:
                return source.get(timeout=0.05)
            except queue.Empty:
                if self._stop.is_set():
                    return _END

    def _pump_source(self, out: queue.Queue) -> None:
        timing = self.timings[0]
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                item = next(self.source, _END)
                if item is _END:
                    break
                timing.seconds += time.perf_counter() - start
                timing.items += 1
                if self.latest_only:
                    self._replace_oldest(out, item)
                elif not self._put(out, item):
                    return
            self._put(out, _END)
        except BaseException as error:  # handed to the calling thread
            self._put(out, _Failure(error))
        finally:
            close = getattr(self.source, "close", None)
            if close is not None:
                close()  # this thread ran the source, so only it may close a generator

    def _replace_oldest(self, out: queue.Queue, item: object) -> None:
        while True:
            try:
                out.put_nowait(item)
                return
            except queue.Full:
                try:
                    out.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _pump_stage(self, args: tuple[Stage, StageTiming, queue.Queue, queue.Queue]) -> None:
        (_, fn), timing, source, out = args
        while True:
            item = self._get(source, timing)
            if item is _END or isinstance(item, _Failure):
                self._put(out, item)
                return
            try:
                item = _timed(fn, item, timing)
            except BaseException as error:
                self._put(out, _Failure(error))
                return
            if not self._put(out, item):
                return

    def _pump_worker(self, args: tuple[Callable, StageTiming, queue.Queue, queue.Queue, _InOrder]) -> None:
        """One thread of a :class:`Workers` stage: take the next item (numbered), work on it, and
        hand it on once every earlier item has been; the end goes on after them all."""
        fn, timing, source, out, order = args
        while True:
            with order.taking:
                if order.finished:
                    return  # another thread took the end and hands it on
                item = self._get(source, timing)
                number, order.taken = order.taken, order.taken + 1
                last = order.finished = item is _END or isinstance(item, _Failure)
            if not last:
                try:
                    item = _timed(fn, item, timing)
                except BaseException as error:  # at once, out of order: the run is over
                    self._put(out, _Failure(error))
                    order.finished = True  # (a sibling may hold ``taking`` while it waits for an item)
                    return
            if not self._hand_on(order, number, item, out) or last:
                return

    def _hand_on(self, order: _InOrder, number: int, item: object, out: queue.Queue) -> bool:
        """Put item ``number`` of a Workers stage on ``out`` after items 0 .. number-1; False
        once the run is stopping."""
        with order.turn:
            while order.handed != number:
                if self._stop.is_set():
                    return False
                order.turn.wait(0.05)
        if not self._put(out, item):
            return False
        with order.turn:
            order.handed += 1
            order.turn.notify_all()
        return True

    # -- the calling thread

    def _consume(self, source: queue.Queue, inline_stages: list[Stage]) -> None:
        # the queue read here is in front of the sink (threaded) or of the first stage (sequential)
        front = self.timings[-1] if self.threaded else self.timings[1]
        while True:
            item = self._get(source, front)
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            for (_, fn), timing in zip(inline_stages, self.timings[1:]):
                item = _timed(fn, item, timing)
            _timed(self.sink[1], item, self.timings[-1])
            self.done_at.append(time.perf_counter())


def _timed(fn: Callable[[Any], Any], item: Any, timing: StageTiming) -> Any:
    start = time.perf_counter()
    result = fn(item)
    timing.seconds += time.perf_counter() - start
    timing.items += 1
    return result


class FramePool:
    """Output frames that are reused once the sink is done with them: a long video then costs a
    handful of frame allocations, not one per frame. Never blocks: when every buffer is in
    flight, :meth:`take` makes a new one (the bounded queues bound how many can be in flight)."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self.allocated = 0
        self._free: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        """A uint8 buffer of ``shape``: a returned one when there is one, else a new one."""
        try:
            frame = self._free.get_nowait()
            if frame.shape == tuple(shape):
                return frame
        except queue.Empty:
            pass
        self.allocated += 1
        return np.empty(shape, np.uint8)

    def give(self, frame: np.ndarray) -> None:
        """Return ``frame`` (one this pool made, which nothing reads any more) for reuse."""
        if self._free.qsize() < self.capacity:
            self._free.put(frame)


def keep_tag(fn: Callable[[Any], Any]) -> Callable[[tuple[Any, Any]], tuple[Any, Any]]:
    """A stage on ``(tag, item)`` pairs: ``fn`` on the item, the tag (a frame's time) carried along
    (for :class:`Workers`, each of its callables)."""
    if isinstance(fn, Workers):
        return Workers(tuple(keep_tag(each) for each in fn.fns))
    return lambda tagged: (tagged[0], fn(tagged[1]))
