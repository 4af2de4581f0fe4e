"""Live swapping from a camera (or any OpenCV capture source) with an FPS read-out.

Shows a window when OpenCV has a GUI (opencv-python; the headless wheel has none) and sends
frames to a virtual camera when ``pyvirtualcam`` is installed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import cv2
import numpy as np

from .errors import MediaError, MfsError
from .face.tracking import check_every
from .media.stages import FramePool, StagedRun, keep_tag
from .pipeline import Swapper
from .preprocess import bgr_to_rgb

WINDOW = "mfs-fast"


@dataclass
class LiveStats:
    """``frames`` shown over ``seconds`` of wall time (first capture to last output); ``latencies``:
    seconds from each shown frame's capture to its output (the processing part of glass to glass);
    ``dropped``: camera frames skipped because the swap was still busy with an older one."""

    frames: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    dropped: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def latency_ms(self, percentile: float = 50) -> float:
        return 1e3 * float(np.percentile(self.latencies, percentile)) if self.latencies else 0.0


def open_capture(camera: str | int) -> cv2.VideoCapture:
    """A camera index ("0") or a video path/URL OpenCV can open."""
    source = int(camera) if str(camera).isdigit() else str(camera)
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise MediaError(f"cannot open camera {camera!r}")
    return capture


def gui_available() -> bool:
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error:
        return False
    return True


def _virtual_camera(width: int, height: int, fps: float):
    try:
        import pyvirtualcam
    except ImportError:
        return None
    return pyvirtualcam.Camera(width=width, height=height, fps=fps)


def draw_overlay(frame: np.ndarray, fps: float, latency_ms: float) -> None:
    """Frames per second shown and the processing latency (capture to output), top left."""
    cv2.putText(frame, f"{fps:5.1f} FPS {latency_ms:4.0f} ms", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 255, 0), 2,
                cv2.LINE_AA)


class _Quit(Exception):
    """'q' or Esc in the window."""


def run_live(swapper: Swapper, camera: str | int = 0, window: bool = True, virtual_camera: bool = True,
             every: int = 5, max_frames: int | None = None, drop_late: bool | None = None,
             realtime: bool = False) -> LiveStats:
    """Swap frames from ``camera`` until it ends, 'q'/Esc is pressed, or ``max_frames`` were read.

    Capture, face finding, swapping and output (window, virtual camera) each run in a thread of
    their own (:class:`~mfs_fast.media.stages.StagedRun`; output in this one, as GUIs need), so
    a frame is captured while the previous one is swapped and the one before is shown. From a
    camera the newest frame is always taken and older ones waiting are dropped, so latency stays
    one frame's work rather than a growing backlog; a file is played frame by frame (``drop_late``:
    None: drop for a camera index, not for a file or URL; True/False: as said). ``realtime``: a
    file's frames arrive at its own frame rate, as a camera delivers them (and late ones are
    dropped unless ``drop_late`` is False): how to measure live latency without a camera.
    Faces are followed by the same :class:`~mfs_fast.face.FaceTracker` as video files, looking for
    new faces every ``every`` frames, here in a thread of its own (``background``) so that no frame
    waits for that search. The overlay shows the FPS and the latency from capture to output.
    """
    check_every(every)  # before a camera or window is opened
    if window and not gui_available():
        raise MfsError("this OpenCV build has no GUI (opencv-python-headless): install opencv-python for a "
                       "window, or pass --no-window (with pyvirtualcam installed, frames go to the virtual camera)")
    capture = open_capture(camera)
    fps_hint = capture.get(cv2.CAP_PROP_FPS) or 30.0
    tracker = swapper.tracker(every=every, fps=fps_hint, background=True)  # no frame waits for a face search
    pool = FramePool()
    stats, output = LiveStats(), _Output(window, virtual_camera, fps_hint)
    stages = [(name, keep_tag(fn)) for name, fn in swapper.frame_stages(tracker, pool)]

    def show(item: tuple[float, np.ndarray]) -> None:
        captured, frame = item
        output.show(frame, stats, time.perf_counter() - captured)
        pool.give(frame)

    camera_like = str(camera).isdigit() or realtime
    run = StagedRun(_captured(capture, max_frames, fps_hint if realtime else None), stages, ("output", show), depth=1,
                    source_name="capture", latest_only=camera_like if drop_late is None else drop_late)
    start = time.perf_counter()
    try:
        run.run()
    except _Quit:
        pass
    finally:
        capture.release()
        output.close()
        tracker.close()
        stats.seconds = time.perf_counter() - start
        stats.dropped = run.dropped
    return stats


def _captured(capture: cv2.VideoCapture, max_frames: int | None,
              pace_fps: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """``(capture time, frame)`` until the source ends or ``max_frames`` were read; with
    ``pace_fps``, frame n is held back until n / pace_fps seconds after the first, when a camera
    would deliver it (decoding ahead of time is not the camera's cost, so it is not counted)."""
    count, start = 0, time.perf_counter()
    while max_frames is None or count < max_frames:
        ok, frame = capture.read()
        if not ok:
            return
        if pace_fps:
            time.sleep(max(0.0, start + count / pace_fps - time.perf_counter()))
        count += 1
        yield time.perf_counter(), frame


class _Output:
    """Where swapped frames go: the window (with the overlay) and/or a virtual camera, if any."""

    def __init__(self, window: bool, virtual_camera: bool, fps_hint: float) -> None:
        self.window, self.virtual_camera, self.fps_hint = window, virtual_camera, fps_hint
        self.camera = None
        self.smoothed_latency = 0.0
        self.last_shown = 0.0
        self.smoothed_fps = 0.0

    def show(self, frame: np.ndarray, stats: LiveStats, latency: float) -> None:
        now = time.perf_counter()
        if stats.frames:
            interval = max(now - self.last_shown, 1e-6)
            self.smoothed_fps = 0.9 * self.smoothed_fps + 0.1 / interval if stats.frames > 1 else 1 / interval
        self.smoothed_latency = 0.9 * self.smoothed_latency + 0.1 * latency if stats.frames else latency
        self.last_shown = now
        stats.frames += 1
        stats.latencies.append(latency)
        if self.virtual_camera and self.camera is None:
            self.camera = _virtual_camera(frame.shape[1], frame.shape[0], self.fps_hint)
            self.virtual_camera = self.camera is not None
        if self.camera is not None:
            self.camera.send(bgr_to_rgb(frame))
        if self.window:
            draw_overlay(frame, self.smoothed_fps, 1e3 * self.smoothed_latency)
            cv2.imshow(WINDOW, frame)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                raise _Quit

    def close(self) -> None:
        if self.camera is not None:
            self.camera.close()
        if self.window:
            cv2.destroyAllWindows()
