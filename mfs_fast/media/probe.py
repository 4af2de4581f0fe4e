"""What a media file is and holds: image or video by content, and a video's size, rate, frame count,
timing and audio streams, from ffmpeg's own report.

* **Kind by content.** :func:`media_kind` looks at magic bytes first (PNG, JPEG, BMP, TIFF, WebP,
  GIF), then asks ffmpeg. A GIF with two or more frames is a ``"video"`` (read with
  :func:`~mfs_fast.media.reader.read_frames`); a single-frame GIF is an ``"image"`` when OpenCV
  can read GIFs, else a one-frame ``"video"``. APNG and animated WebP count as images (their first frame).
* **Rotation.** ffmpeg's autorotate is left on: frames come out upright, ``VideoInfo.width`` and
  ``height`` are the displayed (rotated) size and ``VideoInfo.rotation`` records what the file
  said. Written videos hold upright pixels and no rotation tag. Sample aspect ratio is ignored.
* **Frame rate.** ``VideoInfo.fps`` is the stream's nominal rate as an exact fraction (what
  ffmpeg's filter graph receives, e.g. ``30000/1001``); for a variable-rate stream
  (``VideoInfo.variable_rate``) it is the average rate instead, since the nominal one is only the
  finest tick (e.g. 120 for a mix of 24, 30 and 15 fps). ``VideoInfo.frame_count`` is exact: the
  video packets counted by the probe.
"""

from __future__ import annotations

import collections
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import cv2

from ..errors import ImageError, MediaError, VideoError
from .ffmpeg import _run, _tail, ffmpeg_exe
from .image import check_image_file
from .image_formats import image_format as _image_format, looks_like_text, not_an_image

PathLike = str | os.PathLike

# --------------------------------------------------------------------------------------------- files


def _existing_file(path: PathLike, error: type[MediaError] = MediaError) -> Path:
    """``path`` as a Path, after checking it is a non-empty regular file."""
    path = Path(path)
    if not path.exists():
        raise error(f"file not found: {path}")
    if not path.is_file():
        raise error(f"not a regular file: {path}")
    if path.stat().st_size == 0:
        raise error(f"file is empty: {path}")
    return path


_VIDEO_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # ISO BMFF: mp4, mov, m4v, 3gp
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"wide"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"FLV"),
    (0, b"OggS"),
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
)


def _looks_like_video(head: bytes) -> bool:
    """True when the first bytes are those of a common video container (then errors say 'video')."""
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return True
    return any(head[at:at + len(magic)] == magic for at, magic in _VIDEO_SIGNATURES)


def _skip_sub_blocks(data: bytes, at: int) -> int:
    """Index just after a chain of GIF data sub-blocks starting at ``at``."""
    while True:
        size = data[at]
        at += 1 + size
        if size == 0:
            return at


def _gif_frame_count(path: Path, stop_at: int = 2) -> int:
    """Frames (image descriptors) in a GIF, counting no further than ``stop_at``."""
    data = path.read_bytes()
    try:
        at = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
        frames = 0
        while frames < stop_at:
            block = data[at]
            if block == 0x3B:  # trailer
                break
            if block == 0x21:  # extension: label, then sub-blocks
                at = _skip_sub_blocks(data, at + 2)
            elif block == 0x2C:  # image descriptor, optional local colour table, LZW size, sub-blocks
                flags = data[at + 9]
                at += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
                at = _skip_sub_blocks(data, at + 1)
                frames += 1
            else:
                raise ImageError(f"corrupt GIF {path}: unexpected block 0x{block:02x} at byte {at}")
    except IndexError:
        raise ImageError(f"truncated GIF: {path}") from None
    if frames == 0:
        raise ImageError(f"GIF without any frame: {path}")
    return frames


# ---------------------------------------------------------------------------------------------- kind


def media_kind(path: PathLike) -> Literal["image", "video"]:
    """Whether ``path`` holds an image or a video, judged by its bytes, never by its name.

    Images are recognised by magic bytes and checked to be complete and of a sane size
    (:func:`~mfs_fast.media.image.check_image_file`); anything else but text is asked of ffmpeg.
    Raises :class:`MediaError` (missing, empty, unrecognised), :class:`ImageError` (image header but
    damaged, or an image format this project does not read) or :class:`VideoError` (a video
    container ffmpeg cannot open, e.g. truncated).
    """
    path = _existing_file(path)
    with path.open("rb") as f:
        head = f.read(32)
    fmt = _image_format(head)
    if fmt == "gif":
        if _gif_frame_count(path) > 1 or not cv2.haveImageReader(str(path)):
            return "video"
    if fmt is not None:
        check_image_file(path)
        return "image"
    if looks_like_text(head):
        raise not_an_image(path, head, video_too=True)
    return _kind_from_ffmpeg(path, head)


_IMAGE_DEMUXERS = re.compile(r"^(image2|.*_pipe|gif|apng|webp)$")


def _kind_from_ffmpeg(path: Path, head: bytes) -> Literal["image", "video"]:
    """Ask ffmpeg's demuxers: a video stream in a non-image container is a video."""
    header = _parse_header(_run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]).stderr)
    if header.container is None:
        error = VideoError if _looks_like_video(head) else MediaError
        what = "a corrupt or truncated video" if error is VideoError else "neither an image nor a video ffmpeg reads"
        raise error(f"{path} is {what}: {header.error}")
    if not header.has_video:
        raise MediaError(f"{path} has no video stream (container {header.container}; audio only?)")
    if _IMAGE_DEMUXERS.match(header.container):  # no image magic of ours: ffmpeg guesses from the name
        raise not_an_image(path, head, video_too=True)
    return "video"


# --------------------------------------------------------------------------------------------- probe


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself; sizes are as displayed (after rotation)."""

    width: int
    height: int
    fps: Fraction  # nominal rate; the average rate when variable_rate
    frame_count: int | None  # video packets in the file (= frames decoded, barring damage)
    duration: float | None  # seconds, of the whole file (audio included)
    has_audio: bool
    audio_codec: str | None  # codec of the first audio stream
    audio_codecs: tuple[str, ...] = ()
    rotation: int = 0  # degrees stated by the display matrix (frames are returned upright)
    avg_fps: float | None = None  # average rate as ffmpeg prints it (differs from fps when variable)
    video_codec: str | None = None
    time_base: Fraction | None = None  # the stream's tick: every frame timestamp is a whole number of them
    start: Fraction = Fraction(0)  # the file's start time (seconds, to the microsecond): timelines count from it
    variable_rate: bool = False  # frame steps are not whole multiples of one duration (dropped frames are not VFR)
    pixel_format: str | None = None  # of the decoded frames (e.g. yuv420p), as ffmpeg names it
    colour_space: str | None = None  # the YUV matrix the stream states (bt709, smpte170m, unknown, ...)
    colour_range: str | None = None  # tv (limited), pc (full) or unknown


@dataclass
class _Header:
    """The input section of ``ffmpeg -i`` output, parsed."""

    container: str | None = None
    duration: float | None = None
    start: Fraction = Fraction(0)
    video_codec: str | None = None
    avg_fps: float | None = None
    rotation: int = 0
    audio_codecs: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)  # the container's metadata (title, comment, ...)
    error: str = ""

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None


_STREAM = re.compile(r"^\s*Stream #0:\d+\S*: (Video|Audio): ([\w-]+)(.*)$", re.MULTILINE)


_TAG = re.compile(r"^\s{4}(\w+)\s*: (.*)$", re.MULTILINE)


def _parse_header(stderr: str) -> _Header:
    """Container, duration and streams of input #0 from ffmpeg's stderr."""
    found = re.search(r"^Input #0, (.+?), from '", stderr, re.MULTILINE)
    if found is None:
        return _Header(error=_tail(stderr, 2))
    section = re.split(r"^(?:Output #0|Stream mapping:)", stderr[found.start():], maxsplit=1, flags=re.MULTILINE)[0]
    header = _Header(container=found.group(1))
    duration = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", section)
    if duration:
        h, m, s = duration.groups()
        header.duration = int(h) * 3600 + int(m) * 60 + float(s)
    start = re.search(r", start: (-?\d+(?:\.\d+)?)", section)
    if start:
        header.start = Fraction(start.group(1))
    audio = []
    for kind, codec, rest in _STREAM.findall(section):
        if kind == "Audio":
            audio.append(codec)
        elif header.video_codec is None and "(attached pic)" not in rest:
            header.video_codec = codec
            header.avg_fps = _avg_fps(rest)
    header.audio_codecs = tuple(audio)
    container_part = re.split(r"^\s*(?:Duration:|Stream #)", section, maxsplit=1, flags=re.MULTILINE)[0]
    header.tags = dict(_TAG.findall(container_part))
    rotation = re.search(r"rotation of (-?\d+(?:\.\d+)?) degrees", section)
    if rotation:
        header.rotation = round(float(rotation.group(1))) % 360
    return header


def _avg_fps(stream_line: str) -> float | None:
    found = re.search(r", (\d+(?:\.\d+)?)(k?) fps", stream_line)
    if not found:
        return None
    return float(found.group(1)) * (1000 if found.group(2) else 1)


def probe_tags(path: PathLike) -> dict[str, str]:
    """The container-level metadata tags of any media file (e.g. ``comment``), as ffmpeg reads them."""
    return _media_header(path).tags


def probe_audio(path: PathLike) -> tuple[str, ...]:
    """Codecs of the audio streams of any media file (audio-only files included)."""
    return _media_header(path).audio_codecs


def _media_header(path: PathLike) -> _Header:
    """``ffmpeg -i``'s view of any media file (container, start, streams); MediaError if unreadable."""
    path = _existing_file(path, MediaError)
    header = _parse_header(_run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]).stderr)
    if header.container is None:
        raise MediaError(f"cannot read audio from {path}: {header.error}")
    return header


def probe_video(path: PathLike) -> VideoInfo:
    """Size, exact frame rate, frame count, duration and audio of a video, from one ffmpeg run.

    ffmpeg decodes the first frame through ``showinfo``, which states the exact rate, time base
    and the size after autorotation, i.e. exactly the frames :func:`read_frames` returns; a second
    output copies every video packet to ``framecrc`` (no decoding), which gives the true frame
    count and whether the rate is constant.
    """
    path = _existing_file(path, VideoError)
    proc = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:V:0", "-frames:v", "1",
                 "-vf", "showinfo", "-f", "null", "-", "-map", "0:V:0", "-c", "copy", "-f", "framecrc", "pipe:1"])
    header = _parse_header(proc.stderr)
    if header.container is None:
        raise VideoError(f"cannot open {path} as a video: {header.error}")
    if not header.has_video:
        raise VideoError(f"{path} has no video stream (container {header.container})")
    rate = re.search(r"config in time_base: (\d+)/(\d+), frame_rate: (\d+)/(\d+)", proc.stderr)
    size = re.search(r" s:(\d+)x(\d+) ", proc.stderr)
    if proc.returncode != 0 or size is None:
        raise VideoError(f"cannot decode a frame of {path}: {_tail(proc.stderr)}")
    fps = _frame_rate(rate, header.avg_fps, path)
    time_base = Fraction(int(rate.group(1)), int(rate.group(2))) if rate and int(rate.group(2)) else None
    cadence = _packet_cadence(proc.stdout, fps)
    duration = header.duration
    if cadence is not None and cadence.variable:
        fps = cadence.average_fps
    return VideoInfo(
        width=int(size.group(1)), height=int(size.group(2)), fps=fps,
        frame_count=cadence.count if cadence is not None else
        (None if duration is None else max(1, round(duration * fps))),
        duration=duration, has_audio=bool(header.audio_codecs),
        audio_codec=header.audio_codecs[0] if header.audio_codecs else None,
        audio_codecs=header.audio_codecs, rotation=header.rotation, avg_fps=header.avg_fps,
        video_codec=header.video_codec, time_base=time_base, start=header.start,
        variable_rate=cadence is not None and cadence.variable, **_colour(proc.stderr))


def _colour(stderr: str) -> dict[str, str | None]:
    """Pixel format, colour space and range of the first decoded frame, from ``showinfo``'s lines."""
    fmt = re.search(r"Parsed_showinfo.* fmt:(\S+)", stderr)
    colour = re.search(r"Parsed_showinfo.* color_range:(\S+) color_space:(\S+)", stderr)
    return {"pixel_format": fmt.group(1) if fmt else None,
            "colour_range": colour.group(1) if colour else None,
            "colour_space": colour.group(2) if colour else None}


@dataclass(frozen=True)
class _Cadence:
    count: int
    variable: bool
    average_fps: Fraction


_NOPTS = -(1 << 63)
_DISCARD = 0x4  # AV_PKT_FLAG_DISCARD: dropped after decoding (e.g. outside an mp4 edit list)


def _packet_cadence(framecrc: str, nominal: Fraction) -> _Cadence | None:
    """Frame count and constancy of the rate, from ``framecrc`` lines ``stream, dts, pts,
    duration, size, crc[, F=flags]`` (time base in the ``#tb`` line); None when unusable.

    Constancy is judged against the most common step, not against ``nominal``: ffmpeg's nominal
    rate of a variable stream is the finest common tick (120 for 24, 30 and 15 fps parts), of
    which every step is a whole multiple."""
    tb = re.search(r"^#tb 0: (\d+)/(\d+)", framecrc, re.MULTILINE)
    if tb is None or int(tb.group(2)) == 0:
        return None
    tick = Fraction(int(tb.group(1)), int(tb.group(2)))
    count, stamps = 0, []
    for line in framecrc.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if line.startswith("#") or len(fields) < 6:
            continue
        flags = int(fields[6][2:], 16) if len(fields) > 6 and fields[6].startswith("F=") else 0
        if flags & _DISCARD:
            continue
        count += 1
        if int(fields[2]) != _NOPTS:
            stamps.append(int(fields[2]))
            last_duration = int(fields[3])
    if count == 0:
        return None
    stamps.sort()
    steps = collections.Counter(b - a for a, b in zip(stamps, stamps[1:]))
    common = steps.most_common(1)[0][0] if steps else 0
    # variable: some step is not a whole number of the usual step (a dropped frame's gap is)
    variable = common > 0 and any(round(step / common) == 0 or abs(step - round(step / common) * common) > 1
                                  for step in steps)
    span = (stamps[-1] - stamps[0] + max(last_duration, 1)) * tick if stamps else Fraction(0)
    average = (Fraction(len(stamps)) / span).limit_denominator(1001) if span > 0 else nominal
    return _Cadence(count, variable, average)


def _frame_rate(rate: re.Match | None, avg_fps: float | None, path: Path) -> Fraction:
    """The exact nominal rate; the printed average (to 1/1001 steps) only when that is all there is."""
    if rate and int(rate.group(3)) > 0 and int(rate.group(4)) > 0:
        return Fraction(int(rate.group(3)), int(rate.group(4)))
    if avg_fps:
        return Fraction(avg_fps).limit_denominator(1001)
    raise VideoError(f"{path} states no frame rate")
