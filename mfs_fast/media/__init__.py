"""Media in and out: images and videos read so that nothing is lost or changed silently, and written
atomically (complete or not at all, never over an input). Video goes through the ffmpeg binary of
imageio-ffmpeg: frames in, frames out, every frame at its own time, audio kept.

* :mod:`.probe`: videos: kind by content, probing, reading, writing with audio, transcoding
  (moved here from ``mfs_fast/video.py`` as it was; split up next).
* :mod:`.mkv_stream`: the minimal Matroska stream that carries timestamped raw frames to ffmpeg.
* :mod:`.image`: reading and writing images (bit-exact where untouched, metadata kept);
  :mod:`.image_formats`: their bytes: format sniffing, header sizes, completeness, ICC/EXIF.
"""

from .image import (check_bgr_image, check_image_file, decode_image, output_format, read_bgr, read_image,
                    refuse_inputs, write_image)
from .probe import (VideoInfo, VideoStats, VideoWriter, ffmpeg_exe, media_kind, probe_audio, probe_video,
                    read_frames, read_timed_frames, transcode)

__all__ = [
    "VideoInfo", "VideoStats", "VideoWriter", "check_bgr_image", "check_image_file", "decode_image", "ffmpeg_exe",
    "media_kind", "output_format", "probe_audio", "probe_video", "read_bgr", "read_frames", "read_image",
    "read_timed_frames", "refuse_inputs", "transcode", "write_image",
]
