"""The provenance note: what a file made by a swap says about itself, and reading it back.

Images carry it as XMP (PNG: an iTXt chunk, JPEG: an APP1 segment; :mod:`mfs_fast.media.image_formats`
writes and reads the bytes), with the IPTC digital source type for composites that include
synthetic elements, ``xmp:CreatorTool`` naming mfs_fast and its version, and a plain-language
``dc:description``. Videos carry the same sentence as container tags (``comment`` and
``description``, which ffmpeg writes to MP4, MOV and Matroska). Metadata is easily stripped; the
invisible watermark is the mark that survives re-encoding, so verify reports both.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

from .._version import __version__
from ..media.image_formats import ImageMetadata

SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeSynthetic"
CREATOR = f"mfs_fast {__version__}"
NOTE = f"Faces in this file were synthetically replaced by {CREATOR} (face swap)."
VIDEO_TAGS = {"comment": NOTE, "description": NOTE}


def xmp_packet() -> bytes:
    """The XMP packet written into swapped PNG and JPEG files."""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'xmp:CreatorTool="{escape(CREATOR)}" Iptc4xmpExt:DigitalSourceType="{SOURCE_TYPE}">'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{escape(NOTE)}</rdf:li></rdf:Alt></dc:description>'
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="r"?>'
    ).encode("utf-8")


def note_in_xmp(xmp: bytes | None) -> str | None:
    """The mfs_fast note of an XMP packet ("made by mfs_fast X, synthetic"), or None if it has none."""
    if not xmp:
        return None
    text = xmp.decode("utf-8", "replace")
    tool = re.search(r'xmp:CreatorTool="(mfs_fast [^"]*)"', text)
    if tool is None:
        return None
    synthetic = SOURCE_TYPE in text
    return f"made by {tool.group(1)}" + (", marked as a synthetic composite (IPTC)" if synthetic else "")


def note_in_tags(tags: dict[str, str]) -> str | None:
    """The mfs_fast note among a video's container tags, or None."""
    for key in VIDEO_TAGS:
        found = re.search(r"synthetically replaced by (mfs_fast \S+)", tags.get(key, ""))
        if found:
            return f"made by {found.group(1)}, faces marked as synthetically replaced ({key} tag)"
    return None


def with_note(metadata: ImageMetadata | None) -> ImageMetadata:
    """``metadata`` (the input's ICC and EXIF, kept) plus the provenance XMP packet."""
    metadata = metadata or ImageMetadata()
    return ImageMetadata(icc=metadata.icc, exif=metadata.exif, xmp=xmp_packet())
