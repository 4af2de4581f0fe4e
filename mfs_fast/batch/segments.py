"""Long videos in parallel: split at keyframes without re-encoding, swap each part, join the parts
without re-encoding, and mux the audio once.

* **Split.** The video stream is cut at keyframes (``-c copy``, the segment muxer at the keyframes'
  packet numbers), so every part decodes on its own to exactly the frames the whole file gives
  (closed GOPs, as x264 and phone encoders write by default). Parts are about ``seconds`` long;
  keyframes decide where, so a clip with keyframes far apart gets fewer, longer parts.
* **Join.** The swapped parts (each an H.264 file from the usual video writer, starting at time
  zero) are joined by ffmpeg's concat demuxer with ``-c copy``: nothing is re-encoded at the
  joins. Each part's ``duration`` in the list is the time between its first keyframe and the next
  part's in the source, so every frame lands at its source time. The source's audio is muxed in
  the same ffmpeg run (:func:`mfs_fast.media.writer.mux`, copied unchanged), once, at the end.
* **What differs from one process.** The face tracker starts afresh at each part (it detects on a
  part's first frame and its landmark smoothing has no history), so frames near a join can differ
  slightly from a single-process swap; everything else is the same computation. Variable-rate
  videos are not split (their part durations would not be exact).
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Mapping, Sequence

from ..atomic import PendingFile
from ..errors import VideoError
from ..media.ffmpeg import _run, _tail, ffmpeg_exe
from ..media.probe import VideoInfo
from ..media.writer import _container_for, mux

_NOPTS = -(1 << 63)
_KEY, _DISCARD = 0x1, 0x4  # AVPacket flags, as framecrc prints them (absent: key only)


def keyframes(path: Path) -> list[tuple[int, Fraction]]:
    """(packet number, presentation time in seconds) of every keyframe of the first video stream,
    from its packets copied to ``framecrc`` (nothing decoded)."""
    proc = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:V:0", "-c", "copy",
                 "-f", "framecrc", "pipe:1"], timeout=3600)
    tb = re.search(r"^#tb 0: (\d+)/(\d+)", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or tb is None:
        raise VideoError(f"cannot read the packets of {path}: {_tail(proc.stderr)}")
    tick = Fraction(int(tb.group(1)), int(tb.group(2)))
    found, number = [], 0
    for line in proc.stdout.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if line.startswith("#") or len(fields) < 6:
            continue
        flags = int(fields[6][2:], 16) if len(fields) > 6 and fields[6].startswith("F=") else _KEY
        if flags & _DISCARD:
            continue
        if flags & _KEY and int(fields[2]) != _NOPTS:
            found.append((number, int(fields[2]) * tick))
        number += 1
    return found


def plan(info: VideoInfo, keys: Sequence[tuple[int, Fraction]], seconds: float) -> list[tuple[int, Fraction]]:
    """The keyframes that start each part (the first one included): about ``seconds`` apart, none
    shorter than half of that; ``[]`` when the video is not worth splitting (or variable-rate)."""
    if seconds <= 0 or info.variable_rate or not keys or info.frame_count is None:
        return []
    step = max(1, round(seconds * info.fps))
    if info.frame_count < 2 * step:
        return []
    starts = [keys[0]]
    for number, pts in keys[1:]:
        if number - starts[-1][0] >= step and info.frame_count - number >= step // 2:
            starts.append((number, pts))
    return starts if len(starts) > 1 else []


def split(src: Path, starts: Sequence[tuple[int, Fraction]], folder: Path) -> list[Path]:
    """Cut ``src``'s video stream (no audio) into parts at the ``starts`` keyframes, without
    re-encoding; returns the part files (mp4, each starting at time zero)."""
    folder.mkdir(parents=True, exist_ok=True)
    numbers = ",".join(str(number) for number, _ in starts[1:])
    pattern = folder / "part_%04d.mp4"
    proc = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(src),
                 "-map", "0:V:0", "-c", "copy", "-f", "segment", "-segment_format", "mp4",
                 "-segment_frames", numbers, "-reset_timestamps", "1", str(pattern)], timeout=3600)
    parts = sorted(folder.glob("part_*.mp4"))
    if proc.returncode != 0 or len(parts) != len(starts):
        raise VideoError(f"cannot split {src} at its keyframes ({len(parts)} of {len(starts)} parts): "
                         f"{_tail(proc.stderr)}")
    return parts


def join(parts: Sequence[Path], starts: Sequence[tuple[int, Fraction]], dst: Path, info: VideoInfo,
         audio_from: Path, tags: Mapping[str, str] | None = None) -> Path:
    """Join the swapped ``parts`` (one per start) into ``dst`` without re-encoding, each at its
    source time, with ``audio_from``'s audio muxed once; written atomically."""
    listing = dst.parent / f".{dst.name}.parts.txt"
    lines = ["ffconcat version 1.0"]
    for index, part in enumerate(parts):
        lines.append(f"file '{_quoted(part.resolve())}'")
        if index + 1 < len(parts):
            lines.append(f"duration {float(starts[index + 1][1] - starts[index][1]):.9f}")
    metadata = [arg for key, value in (tags or {}).items() for arg in ("-metadata", f"{key}={value}")]
    with PendingFile(dst, "join", VideoError) as pending:
        try:
            listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
            mux(["-f", "concat", "-safe", "0", "-i", str(listing)], pending.path, _container_for(dst),
                audio_from if info.has_audio else None, info.start, dst_name=dst, metadata=metadata)
        finally:
            listing.unlink(missing_ok=True)
        return pending.commit()


def _quoted(path: Path) -> str:
    """A path inside single quotes of an ffconcat ``file`` line."""
    return str(path).replace("'", "'\\''")
