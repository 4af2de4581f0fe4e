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


# ---------------------------------------------------------------- source nets freed by a video
# A video needs only the IDN: the identity net and the IIN's weights predictor (73 MB of the
# starter IIN's 79) run once per source. swap_video frees them; the next source reads them back.

SHORT = 12
OWN_BOUND_1080P_MB = 420  # issue #21's 600 MB for a 1080p video, less a running machine's library pages


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    return drifting_face_clip(tmp_path_factory.mktemp("short") / "short.mp4", WIDTH, HEIGHT,
                              [100 + 4 * i for i in range(SHORT)], top=50, background=60)


def _identity_tensors(swapper: Swapper) -> list:
    return [value.clone() for _, value in swapper.identity.tensors()]


def test_a_video_frees_the_source_nets_and_a_new_source_reads_them_back_unchanged(short_clip, tmp_path):
    import torch

    swapper = Swapper(_astronaut_bgr())
    before = _identity_tensors(swapper)
    first = swapper.swap_video(short_clip, tmp_path / "a.mp4", progress=False)
    assert first.frames_out == SHORT
    assert swapper.models.identity is None and swapper.models.iin.predictor is None
    swapper.set_source(_astronaut_bgr())  # read back from the starter folder
    assert swapper.models.identity is not None and swapper.models.iin.predictor is not None
    after = _identity_tensors(swapper)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_models_passed_as_an_object_are_left_whole(short_clip, tmp_path):
    from mfs_fast.weights import load_starter_weights

    models = load_starter_weights()
    swapper = Swapper(_astronaut_bgr(), weights=models)
    swapper.swap_video(short_clip, tmp_path / "a.mp4", progress=False)
    assert models.identity is not None and models.iin.predictor is not None


def test_weights_changed_on_disk_are_not_mixed_in(tmp_path):
    from mfs_fast.checkpoints import load_weights, save_weights
    from mfs_fast.errors import CheckpointError
    from mfs_fast.models import FaceSwapModels
    from mfs_fast.weights import load_starter_weights

    save_weights(load_starter_weights(), tmp_path / "w", storage="int8")
    models = load_weights(tmp_path / "w")
    assert models.reload is not None and models.release_source_nets()
    assert not models.release_source_nets()  # already released
    other = FaceSwapModels.random(seed=3)
    other.identity = load_starter_weights().identity  # same kind of identity net, other IIN
    save_weights(other, tmp_path / "w", storage="int8")
    with pytest.raises(CheckpointError, match="changed on disk since they were loaded"):
        models.identity_input(_astronaut_bgr()[100:324, 150:374])
    assert models.identity is None and models.iin.predictor is None  # never a mix of two trainings


def test_models_built_in_memory_keep_their_source_nets():
    from mfs_fast.models import FaceSwapModels

    models = FaceSwapModels.random()
    assert models.reload is None and not models.release_source_nets() and models.identity is not None


_PEAK_SCRIPT = """
import sys
from mfs_fast import Swapper
from mfs_fast.memory import RssSampler, anonymous_bytes
swapper = Swapper(sys.argv[1])
with RssSampler(interval=0.02) as rss, RssSampler(interval=0.02, measure=anonymous_bytes) as own:
    stats = swapper.swap_video(sys.argv[2], sys.argv[3], progress=False)
print(stats.frames_out, swapper.stats.faces_swapped, rss.peak, own.peak)
"""


def test_a_1080p_video_stays_within_its_memory_bound(tmp_path):
    """In a process of its own, importing only mfs_fast (this one holds every other test's memory).

    Bound: the process's own memory (``RssAnon``) under 420 MB, so the issue's 600 MB holds with
    the ~140-180 MB of clean library pages a running machine keeps resident (measured: 507 MB in
    all at 1080p). Right after installing, the page cache holds every page of torch and OpenCV and
    the kernel maps ~100 MB more of them (605-615 MB in all): pages it can drop at any time, and
    not this project's to bound. Before the source nets were freed, own memory was ~475 MB."""
    import os
    import subprocess
    import sys

    import cv2

    frames = 45
    clip = drifting_face_clip(tmp_path / "hd.mp4", 1920, 1080, [400 + 20 * i for i in range(frames)],
                              top=300, background=60)
    source = tmp_path / "source.png"
    cv2.imwrite(str(source), _astronaut_bgr())
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(source), str(clip), str(tmp_path / "out.mp4")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-2000:]
    frames_out, swapped, peak, own = (int(value) for value in done.stdout.split()[-4:])
    print(f"1080p: {frames_out} frames, {swapped} faces swapped, peak RSS {peak / 2**20:.0f} MB, "
          f"own (RssAnon) {own / 2**20:.0f} MB")
    assert frames_out == frames and swapped >= frames * 0.9
    assert own < OWN_BOUND_1080P_MB * 2**20, f"own memory {own / 2**20:.0f} MB over {OWN_BOUND_1080P_MB} MB"
