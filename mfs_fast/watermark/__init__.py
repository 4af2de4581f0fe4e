"""Marking every swap as synthetic, and checking a file for the mark (issue 23).

* :mod:`.payload`: the 64 bits carried (the mfs_fast tag, version, optional user id, CRC).
* :mod:`.pattern`: the spread-spectrum tile they are spread over.
* :mod:`.embed`: :class:`Watermark`, which adds the tile to the swapped regions of a frame.
* :mod:`.detect`: :func:`detect`, which finds it again after crops, scaling and recompression.
* :mod:`.metadata`: the provenance note written into PNG, JPEG and video files, and read back.
* :mod:`.verify`: :func:`verify_file`, what ``mfs-fast verify FILE`` runs.

:class:`~mfs_fast.pipeline.Swapper` marks by default; ``watermark=False`` (``--no-watermark``)
is the explicit opt-out and warns (:data:`OPT_OUT_WARNING`).
"""

from .detect import Detection, detect
from .embed import Watermark
from .payload import Payload


OPT_OUT_WARNING = ("watermark off (--no-watermark / watermark=False): outputs are NOT marked as synthetic (no "
                   "invisible watermark, no provenance metadata); share them only with the consent of the people "
                   "shown, and say that they are synthetic")


__all__ = ["Detection", "Payload", "Watermark", "OPT_OUT_WARNING", "detect"]
