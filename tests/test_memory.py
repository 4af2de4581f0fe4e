"""Memory of the pipelined video path is bounded by its queues: it does not grow with the video's length.

A synthetic 640x360 clip (a face drifting over a plain background) runs through the whole
pipelined ``swap_video`` while :class:`mfs_fast.memory.RssSampler` samples the resident memory;
if any stage kept frames (a queue without a bound, a pool that never reuses, a list of results),
the memory would climb by ~0.7 MB per frame, ~60 MB between the medians of the first and the last third here.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import _astronaut_bgr
from mfs_fast import Swapper
from sample_media import drifting_face_clip
from mfs_fast.memory import RssSampler, rss_bytes

FRAMES = 150
WIDTH, HEIGHT = 640, 360


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    lefts = [100 + int(150 * (1 + np.sin(i / 40))) for i in range(FRAMES)]
    return drifting_face_clip(tmp_path_factory.mktemp("long") / "long.mp4", WIDTH, HEIGHT, lefts, top=50, background=60)


def test_rss_is_a_number_of_bytes():
    assert 10 * 2**20 < rss_bytes() < 64 * 2**30


def test_memory_does_not_grow_along_a_long_clip(long_clip, tmp_path):
    swapper = Swapper(_astronaut_bgr())  # the bundled starter weights: the quickest to load
    with RssSampler(interval=0.02) as rss:
        stats = swapper.swap_video(long_clip, tmp_path / "out.mp4", progress=False)
    assert stats.frames_out == FRAMES and swapper.stats.faces_swapped >= FRAMES * 0.9
    times = np.array([t for t, _ in rss.samples])
    values = np.array([v for _, v in rss.samples]) / 2**20
    end = times[-1]
    first, last = values[(times > end / 6) & (times < end / 3)], values[times > 2 * end / 3]
    assert len(first) >= 5 and len(last) >= 5, len(rss.samples)
    growth = np.median(last) - np.median(first)
    print(f"RSS over {FRAMES} frames: median {np.median(first):.0f} MB early, {np.median(last):.0f} MB late, "
          f"peak {rss.peak / 2**20:.0f} MB")
    assert growth < 25, f"memory grew by {growth:.0f} MB along the clip"
