"""``mfs-fast verify FILE``: is this image or video marked as made by mfs_fast, and how sure is that.

Images are checked whole; videos at up to ``frames`` evenly spaced frames (a frame without a
swapped face carries no mark, so a video counts as marked when any sampled frame is, and the
count of marked frames is reported). The provenance note in the metadata is reported beside it.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from ..errors import VideoError
from ..media import media_kind, read_frames, read_image
from ..media.probe import probe_tags, probe_video
from .detect import MIN_Z, Detection, detect
from .metadata import note_in_tags, note_in_xmp

DEFAULT_FRAMES = 12


@dataclass(frozen=True)
class Verdict:
    """The watermark (best detection over the frames looked at) and the metadata note of one file."""

    path: Path
    kind: str  # "image" or "video"
    detection: Detection
    frames_checked: int
    frames_marked: int
    note: str | None  # the provenance metadata, None when absent

    @property
    def marked(self) -> bool:
        """Either mark says the file came from mfs_fast."""
        return self.detection.found or self.note is not None

    def lines(self) -> list[str]:
        """What ``mfs-fast verify`` prints: the watermark line, then the metadata line."""
        d = self.detection
        where = f" in {self.frames_marked} of {self.frames_checked} sampled frames" if self.kind == "video" else ""
        if d.found:
            payload = f"payload: {d.payload}" if d.payload else "payload unreadable (mark too weak for its 32 bits)"
            mark = (f"watermark: found{where}, confidence {d.confidence:.6f} (false-alarm probability "
                    f"{d.false_alarm:.1e}, z {d.z:.1f}); {payload}")
        else:
            mark = f"watermark: not found{where and ' in ' + str(self.frames_checked) + ' sampled frames'} " \
                   f"(best z {d.z:.1f}, {MIN_Z:g} needed)"
        return [f"{self.path}: {mark}", f"{self.path}: metadata: {self.note or 'no mfs_fast provenance note'}"]


def verify_file(path: str | Path, frames: int = DEFAULT_FRAMES) -> Verdict:
    """Look for both marks in an image or video file; bad files raise :class:`~mfs_fast.MfsError`."""
    path = Path(path)
    if media_kind(path) == "image":
        image = read_image(path)
        return Verdict(path, "image", detect(image.bgr), 1, 0, note_in_xmp(image.header.xmp))
    detections = [detect(frame) for frame in _sampled_frames(path, frames)]
    if not detections:
        raise VideoError(f"no frame could be decoded from {path}; check that the video plays")
    best = max(detections, key=lambda d: d.z)
    marked = sum(d.found for d in detections)
    return Verdict(path, "video", best, len(detections), marked, note_in_tags(probe_tags(path)))


def _sampled_frames(path: Path, count: int):
    """Up to ``count`` frames spread evenly over the video (all of them when it is shorter)."""
    total = probe_video(path).frame_count or count
    wanted = {round(i * (total - 1) / max(count - 1, 1)) for i in range(min(count, total))}
    last = max(wanted)
    with closing(read_frames(path)) as decoded:
        for index, frame in enumerate(decoded):
            if index in wanted:
                yield frame
            if index >= last:
                return
