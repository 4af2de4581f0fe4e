"""The live loop (mfs_fast/webcam.py) in threads: a clip stands in for the camera (OpenCV opens both),
every frame is shown once, in order, and the latency from capture to output is measured."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import _astronaut_bgr
from mfs_fast import Swapper
from sample_media import drifting_face_clip
from mfs_fast.webcam import draw_overlay, run_live

FRAMES = 20


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    lefts = [100 + 4 * i for i in range(FRAMES)]
    return drifting_face_clip(tmp_path_factory.mktemp("cam") / "cam.mp4", 480, 320, lefts, top=30, background=50)


def test_live_loop_shows_every_frame_with_its_latency(face_clip):
    swapper = Swapper(_astronaut_bgr())  # the bundled starter weights
    stats = run_live(swapper, camera=str(face_clip), window=False, virtual_camera=False, every=5)
    assert stats.frames == FRAMES and len(stats.latencies) == FRAMES
    assert stats.dropped == 0  # a file is played frame by frame; only a live camera skips late frames
    assert swapper.stats.faces_swapped >= FRAMES - 2
    # each frame's latency spans at least its own face finding and swap (it starts at capture)
    work = sum(swapper.stats.seconds.values()) / swapper.stats.frames
    assert np.mean(stats.latencies) >= work > 0
    assert stats.latency_ms(95) >= stats.latency_ms(50) > 0 and stats.fps > 0
    # as from a live camera: frames the swap was too busy for are dropped, the last one is shown
    late = run_live(swapper, camera=str(face_clip), window=False, virtual_camera=False, drop_late=True)
    assert late.frames + late.dropped == FRAMES and late.frames >= 1


def test_a_file_played_in_real_time_arrives_at_its_frame_rate(face_clip):
    """--realtime: the clip's frames arrive as a 30 FPS camera delivers them, so the run takes at
    least the clip's duration, every frame is either shown or skipped as late, and each shown
    frame's latency is counted from its arrival, not from when it could first be decoded."""
    swapper = Swapper(_astronaut_bgr())
    live = run_live(swapper, camera=str(face_clip), window=False, virtual_camera=False, realtime=True)
    assert live.frames + live.dropped == FRAMES and live.frames >= 1
    assert live.seconds >= (FRAMES - 1) / 30 * 0.98
    assert len(live.latencies) == live.frames and live.latency_ms(50) > 0
    assert live.fps <= 30 * 1.1  # not faster than the camera it stands in for
    fast = run_live(swapper, camera=str(face_clip), window=False, virtual_camera=False)  # frame by frame, unpaced
    assert fast.frames == FRAMES and fast.dropped == 0


def test_overlay_writes_fps_and_latency_in_the_top_left_corner():
    frame = np.zeros((240, 320, 3), np.uint8)
    draw_overlay(frame, 29.7, 23.0)
    drawn = frame.any(axis=2)
    assert drawn[:40, :].sum() > 200 and not drawn[45:, :].any()
    wider = np.zeros_like(frame)
    draw_overlay(wider, 29.7, 1234.0)  # more digits, more ink: the latency is part of the text
    assert wider.any(axis=2).sum() > drawn.sum()
