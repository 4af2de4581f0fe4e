"""Media in and out: images and videos read so that nothing is lost or changed silently, and written
atomically (complete or not at all, never over an input). Video goes through the ffmpeg binary of
imageio-ffmpeg: frames in, frames out, every frame at its own time, audio kept.

Which module does what (each states its design decisions next to the code):

* :mod:`.probe`: what a file is and holds: image or video by its bytes (:func:`media_kind`), a
  video's size, exact rate, frame count and timing (:func:`probe_video`, :class:`VideoInfo`), the
  audio codecs of any media file (:func:`probe_audio`).
* :mod:`.reader`: decoding: :func:`read_frames`, and :func:`read_timed_frames` with each frame's
  presentation time; damaged input warns.
* :mod:`.writer`: :class:`VideoWriter`: H.264 at the frames' own times, audio muxed on close.
* :mod:`.transcode`: :func:`transcode`, a whole video through a per-frame function (:class:`VideoStats`).
* :mod:`.ffmpeg`: the ffmpeg processes underneath: the binary (:func:`ffmpeg_exe`), starting,
  running and stopping it in its own process group.
* :mod:`.mkv_stream`: the minimal Matroska stream that carries timestamped raw frames to ffmpeg.
* :mod:`.image`: reading and writing images (bit-exact where untouched, metadata kept);
  :mod:`.image_formats`: their bytes: format sniffing, header sizes, completeness, ICC/EXIF.
"""

from .ffmpeg import ffmpeg_exe
from .image import (check_bgr_image, check_image_file, decode_image, output_format, read_bgr, read_image,
                    refuse_inputs, write_image)
from .probe import VideoInfo, media_kind, probe_audio, probe_video
from .reader import read_frames, read_timed_frames
from .transcode import VideoStats, transcode
from .writer import VideoWriter

__all__ = [
    "VideoInfo", "VideoStats", "VideoWriter", "check_bgr_image", "check_image_file", "decode_image", "ffmpeg_exe",
    "media_kind", "output_format", "probe_audio", "probe_video", "read_bgr", "read_frames", "read_image",
    "read_timed_frames", "refuse_inputs", "transcode", "write_image",
]
