"""What the watermark says: the fixed mfs_fast tag, the version that made the file, an optional user id.

64 bits in all: a 32-bit tag (the first 4 bytes of SHA-256 of ``b"mfs_fast"``), the version as
major and minor (4 bits each), a 16-bit user id (0: none) and a CRC-8 over the rest. The tag is
known to the detector, so it doubles as the synchronisation pattern (where the tile starts in a
cropped image); the CRC rejects a payload read at a wrong position or through too much noise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..errors import MfsError

TAG = int.from_bytes(hashlib.sha256(b"mfs_fast").digest()[:4], "big")
TAG_BITS, VERSION_BITS, USER_BITS, CRC_BITS = 32, 8, 16, 8
PAYLOAD_BITS = TAG_BITS + VERSION_BITS + USER_BITS + CRC_BITS  # 64
MAX_USER_ID = (1 << USER_BITS) - 1


@dataclass(frozen=True)
class Payload:
    """The decoded contents: ``version`` as "major.minor" and ``user_id`` (0 when none was set)."""

    version: str
    user_id: int = 0

    def __str__(self) -> str:
        user = f", user id {self.user_id}" if self.user_id else ""
        return f"mfs_fast {self.version}{user}"


def check_user_id(user_id: int) -> int:
    """``user_id`` must fit the payload's 16 bits: 0 (none) to 65535."""
    if not isinstance(user_id, (int, np.integer)) or isinstance(user_id, bool) or not 0 <= user_id <= MAX_USER_ID:
        raise MfsError(f"the watermark user id must be a whole number from 0 to {MAX_USER_ID}, got {user_id!r}")
    return int(user_id)


def _version_byte(version: str) -> int:
    major, minor = (int(part) for part in version.split(".")[:2])
    return (min(major, 15) << 4) | min(minor, 15)


def _crc8(value: int, bits: int) -> int:
    """CRC-8 (polynomial 0x07) of the ``bits`` low bits of ``value``, most significant first."""
    crc = 0
    for i in range(bits - 1, -1, -1):
        top = ((crc >> 7) & 1) ^ ((value >> i) & 1)
        crc = ((crc << 1) & 0xFF) ^ (0x07 if top else 0)
    return crc


def encode(version: str, user_id: int = 0) -> np.ndarray:
    """The 64 payload bits as +1/-1 (float32), tag first."""
    body = (TAG << (VERSION_BITS + USER_BITS)) | (_version_byte(version) << USER_BITS) | check_user_id(user_id)
    word = (body << CRC_BITS) | _crc8(body, PAYLOAD_BITS - CRC_BITS)
    bits = [(word >> (PAYLOAD_BITS - 1 - i)) & 1 for i in range(PAYLOAD_BITS)]
    return np.where(np.array(bits) == 1, 1.0, -1.0).astype(np.float32)


def tag_signs() -> np.ndarray:
    """The tag's 32 bits as +1/-1: what the detector correlates with to find the tile."""
    return encode("0.0")[:TAG_BITS]


def decode(soft_bits: np.ndarray) -> Payload | None:
    """The payload from 64 soft bits (sign = bit), or None when the CRC does not match. The tag bits
    are not read: the detector found the tag by correlation already (the sync), so the CRC is
    checked over the known tag and the read version and user id."""
    word = 0
    for value in soft_bits:
        word = (word << 1) | int(value > 0)
    body, crc = word >> CRC_BITS, word & 0xFF
    if _crc8((TAG << (PAYLOAD_BITS - CRC_BITS - TAG_BITS)) | (body & ((1 << (VERSION_BITS + USER_BITS)) - 1)),
             PAYLOAD_BITS - CRC_BITS) != crc:
        return None
    version = (body >> USER_BITS) & 0xFF
    return Payload(f"{version >> 4}.{version & 15}", body & MAX_USER_ID)
