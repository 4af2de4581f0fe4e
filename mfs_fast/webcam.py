"""Live swapping from a camera (or any OpenCV capture source) with an FPS read-out.

Shows a window when OpenCV has a GUI (opencv-python; the headless wheel has none) and sends
frames to a virtual camera when ``pyvirtualcam`` is installed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import MediaError, MfsError
from .face.tracking import check_every
from .pipeline import Swapper
from .preprocess import bgr_to_rgb

WINDOW = "mfs-fast"


@dataclass
class LiveStats:
    frames: int = 0
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


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


def draw_fps(frame: np.ndarray, fps: float) -> None:
    cv2.putText(frame, f"{fps:5.1f} FPS", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 255, 0), 2, cv2.LINE_AA)


def run_live(swapper: Swapper, camera: str | int = 0, window: bool = True, virtual_camera: bool = True,
             every: int = 5, max_frames: int | None = None) -> LiveStats:
    """Swap frames from ``camera`` until it ends, 'q'/Esc is pressed, or ``max_frames``.

    Faces are followed by the same :class:`~mfs_fast.face.FaceTracker` as video files
    (:meth:`Swapper.swap_tracked`), detecting every ``every`` frames.
    """
    check_every(every)  # before a camera or window is opened
    if window and not gui_available():
        raise MfsError("this OpenCV build has no GUI (opencv-python-headless): install opencv-python for a "
                       "window, or pass --no-window (with pyvirtualcam installed, frames go to the virtual camera)")
    capture = open_capture(camera)
    fps_hint = capture.get(cv2.CAP_PROP_FPS) or 30.0
    tracker = swapper.tracker(every=every, fps=fps_hint)
    stats, smoothed_fps, cam = LiveStats(), 0.0, None
    try:
        while max_frames is None or stats.frames < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            start = time.perf_counter()
            out = swapper.swap_tracked(frame, tracker)
            elapsed = time.perf_counter() - start
            stats.frames += 1
            stats.seconds += elapsed
            smoothed_fps = 0.9 * smoothed_fps + 0.1 / max(elapsed, 1e-6) if stats.frames > 1 else 1 / max(elapsed, 1e-6)
            if virtual_camera and cam is None:
                cam = _virtual_camera(out.shape[1], out.shape[0], fps_hint)
                virtual_camera = cam is not None
            if cam is not None:
                cam.send(bgr_to_rgb(out))
            if window:
                draw_fps(out, smoothed_fps)
                cv2.imshow(WINDOW, out)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
    finally:
        capture.release()
        if cam is not None:
            cam.close()
        if window:
            cv2.destroyAllWindows()
    return stats
