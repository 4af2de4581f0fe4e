"""Overlapping stages (mfs_fast/media/stages.py): order kept, real overlap, bounded queues, errors
surface in the caller with every thread stopped and the source closed."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from mfs_fast.media.stages import FramePool, StagedRun, Workers, keep_tag


def _collect(source, stages, threaded=True, depth=2, **options) -> tuple[list, StagedRun]:
    out: list = []
    run = StagedRun(source, stages, ("sink", out.append), depth=depth, threaded=threaded, **options)
    run.run()
    return out, run


@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "sequential"])
def test_every_item_through_every_stage_in_order(threaded):
    out, run = _collect(iter(range(200)), [("double", lambda x: 2 * x), ("plus1", lambda x: x + 1)], threaded)
    assert out == [2 * x + 1 for x in range(200)]
    assert [t.name for t in run.timings] == ["decode", "double", "plus1", "sink"]
    assert [t.items for t in run.timings] == [200] * 4
    assert len(run.done_at) == 200 and list(run.done_at) == sorted(run.done_at)


def test_stages_overlap_and_the_slowest_sets_the_pace():
    """Two stages of 15 ms each (sleep releases the GIL like the native work does): threaded, a frame
    leaves every ~15 ms; in turn, every ~30 ms. The queue in front of the first stage stays full."""
    def work(x):
        time.sleep(0.015)
        return x

    walls = {}
    for threaded in (False, True):
        start = time.perf_counter()
        out, run = _collect(iter(range(30)), [("a", work), ("b", work)], threaded)
        walls[threaded] = time.perf_counter() - start
        assert out == list(range(30))
    assert walls[True] < 0.7 * walls[False], walls
    assert run.timings[1].mean_queue_depth > 1.0  # the fast source keeps stage a's queue full
    assert run.timings[1].ms_per_item >= 15.0


def test_queues_hold_at_most_depth_items():
    """However fast the source, it is never more than the queues and the stages in flight ahead."""
    produced = []

    def source():
        for i in range(100):
            produced.append(i)
            yield i

    ahead = []

    def slow_sink(x):
        ahead.append(len(produced) - x)
        time.sleep(0.002)

    run = StagedRun(source(), [("a", lambda x: x), ("b", lambda x: x)], ("sink", slow_sink), depth=2)
    run.run()
    # 3 queues of 2, one item in each of the 2 stages and in the source's hand, plus the sink's own
    assert max(ahead) <= 3 * 2 + 2 + 1 + 1, max(ahead)


@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "sequential"])
def test_workers_keep_the_order_and_share_the_work(threaded):
    """Items take random times in each worker (sleep releases the GIL like the native work): they
    still leave in order, each worker with its own state worked on some of them when threaded,
    only the first one in turn; the stage's timing adds up the workers'."""
    rng = np.random.default_rng(7)
    delays = rng.uniform(0, 0.004, 300)
    seen: list[list[int]] = [[], [], []]

    def worker(index):
        def work(x):
            seen[index].append(x)
            time.sleep(delays[x])
            return 3 * x
        return work

    out, run = _collect(iter(range(300)), [("a", lambda x: x), ("w", Workers(tuple(worker(i) for i in range(3)))),
                                           ("b", lambda x: x + 1)], threaded)
    assert out == [3 * x + 1 for x in range(300)]
    assert sorted(seen[0] + seen[1] + seen[2]) == list(range(300))
    assert all(seen) if threaded else seen[0] == list(range(300))
    timing = run.timings[2]
    assert timing.items == 300 and timing.threads == (3 if threaded else 1)
    assert timing.seconds >= 0.9 * delays.sum()


def test_workers_set_the_pace_together():
    """One 20 ms stage in 2 workers after a 10 ms one: a frame every ~10 ms, not every 20."""
    def work(ms):
        def sleep(x):
            time.sleep(ms / 1e3)
            return x
        return sleep

    walls = {}
    for workers in (1, 2):
        start = time.perf_counter()
        out, run = _collect(iter(range(40)), [("a", work(10)), ("w", Workers(tuple(work(20) for _ in range(workers))))])
        walls[workers] = time.perf_counter() - start
        assert out == list(range(40))
        assert run.timings[2].items_per_second == pytest.approx(workers * 50, rel=0.3)
    assert walls[2] < 0.7 * walls[1], walls


def test_keep_tag_tags_each_worker():
    tagged = keep_tag(Workers((lambda x: x + 1, lambda x: x + 2)))
    assert isinstance(tagged, Workers) and [fn(("t", 1)) for fn in tagged.fns] == [("t", 2), ("t", 3)]
    with pytest.raises(ValueError, match="at least one"):
        Workers(())


@pytest.mark.parametrize("where", ["source", "stage", "workers", "sink"])
def test_an_error_anywhere_is_raised_and_every_thread_stops(where):
    closed = threading.Event()

    def source():
        try:
            for i in range(10_000):
                if where == "source" and i == 50:
                    raise ValueError("source broke")
                yield i
        finally:
            closed.set()

    def stage(x):
        if where == "stage" and x == 50:
            raise ValueError("stage broke")
        return x

    def sink(x):
        if where == "sink" and x == 50:
            raise ValueError("sink broke")

    def worker(x):
        if where == "workers" and x == 50:
            raise ValueError("workers broke")
        return x

    before = threading.active_count()
    run = StagedRun(source(), [("a", stage), ("b", Workers((worker, worker)))], ("sink", sink))
    with pytest.raises(ValueError, match=f"{where} broke"):
        run.run()
    assert closed.is_set()  # the generator's finally ran: ffmpeg would be stopped
    assert threading.active_count() == before


def test_latest_only_drops_the_oldest_waiting_items():
    """A live camera: the source never waits; what the slow stage could not take in time is dropped."""
    def camera():
        for i in range(60):
            time.sleep(0.001)
            yield i

    def slow(x):
        time.sleep(0.01)
        return x

    out, run = _collect(camera(), [("swap", slow)], depth=1, latest_only=True)
    assert run.dropped > 0 and len(out) + run.dropped == 60
    assert out == sorted(out) and out[-1] == 59  # newest frames kept, in order, the last one shown


def test_frame_pool_reuses_returned_buffers():
    pool = FramePool(capacity=2)
    first = pool.take((4, 6, 3))
    pool.give(first)
    assert pool.take((4, 6, 3)) is first
    other = pool.take((4, 6, 3))
    assert other is not first and pool.allocated == 2
    pool.give(first)
    assert pool.take((2, 2, 3)).shape == (2, 2, 3)  # a buffer of another shape is not handed out
    assert isinstance(other, np.ndarray) and other.dtype == np.uint8
