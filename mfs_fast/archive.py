"""Take named files out of an untrusted zip or tar archive, and nothing else.

Why not ``extractall``: an archive can name paths outside the destination (``/etc/x``,
``../../x``), carry links that later writes follow, or expand a few KB into terabytes. Here every
member is checked first (no absolute paths, no ``..``, no links or devices, no encrypted members,
sizes and compression ratios within :class:`Limits`), then only the wanted files are written, under
their base names, into a folder the caller owns, counting the bytes actually produced (headers can
lie). Any problem is one :class:`ArchiveError` and the caller removes its folder.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from .errors import ArchiveError

CHUNK = 1 << 20
# what operating systems add to archives that nobody means to ship
_IGNORED_PREFIXES = ("__MACOSX/",)


@dataclass(frozen=True)
class Limits:
    """Bounds on what unpacking may cost."""

    max_members: int = 10_000
    max_file_bytes: int = 1 << 30  # one unpacked file
    max_total_bytes: int = 2 << 30  # all members together, as declared
    max_ratio: float = 100.0  # zip: unpacked / packed size of one member (weights compress ~1.1x)


@dataclass(frozen=True)
class _Member:
    name: str
    size: int
    handle: object  # ZipInfo or TarInfo


def archive_kind(path: Path) -> str:
    """``zip`` or ``tar`` (plain, gzip, bzip2, xz) by content; ArchiveError for anything else."""
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except OSError as e:
        raise ArchiveError(f"cannot read {path}: {e.strerror or e}") from None
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or head[257:262] == b"ustar":
        return "tar"
    if head.startswith((b"Rar!", b"7z\xbc\xaf\x27\x1c")):
        raise ArchiveError(f"{path} is a {'RAR' if head.startswith(b'Rar!') else '7-Zip'} archive, which this build "
                           f"does not unpack: unpack it yourself and pass the folder instead")
    looks = "an HTML page (a download page saved instead of the file?)" if b"<html" in head.lower() else \
        "empty" if not head else "not a zip or tar archive"
    raise ArchiveError(f"{path} is {looks}")


def check_member_name(name: str) -> str:
    """``name`` as a relative POSIX path, or ArchiveError if it is absolute or climbs out with ``..``."""
    if not name or "\x00" in name:
        raise ArchiveError(f"archive member with an empty or invalid name {name!r}")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise ArchiveError(f"archive member {name!r} has an absolute path: refusing the archive")
    if ".." in PurePosixPath(posix).parts:
        raise ArchiveError(f"archive member {name!r} points outside the archive ('..'): refusing the archive")
    return posix


def extract(archive: Path, dest: Path, wanted: Iterable[str], limits: Limits = Limits()) -> dict[str, Path]:
    """Check every member of ``archive``, then write the members whose base names are in
    ``wanted`` to ``dest/<base name>``; returns base name -> written path. Each wanted name must
    occur exactly once (macOS ``__MACOSX/`` and ``._*`` shadow files are ignored)."""
    wanted = list(wanted)
    kind = archive_kind(archive)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                members = _checked(_zip_members(zf, limits), limits, archive)
                return _write_wanted(members, wanted, dest, lambda m: zf.open(m.handle), limits, archive)
        with tarfile.open(archive, "r:*") as tf:
            members = _checked(_tar_members(tf, limits, archive), limits, archive)
            return _write_wanted(members, wanted, dest, lambda m: tf.extractfile(m.handle), limits, archive)
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zipfile.LargeZipFile, NotImplementedError,
            RuntimeError, ValueError) as e:
        # truncated or damaged data (zip CRC mismatch, short gzip stream, unsupported compression)
        raise ArchiveError(f"{archive} is damaged or incomplete ({type(e).__name__}: {e}); "
                           f"download it again") from None
    except OSError as e:
        if e.filename is None:  # zlib/lzma/bz2 decoding errors are OSErrors without a file name
            raise ArchiveError(f"{archive} is damaged or incomplete ({e}); download it again") from None
        raise


def _zip_members(zf: zipfile.ZipFile, limits: Limits) -> Iterable[_Member]:
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise ArchiveError(f"the archive has {len(infos)} members, more than the {limits.max_members} allowed")
    for info in infos:
        name = check_member_name(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)  # Unix file type, when the zip records one
        if kind == stat.S_IFLNK:
            raise ArchiveError(f"archive member {name!r} is a symbolic link: refusing the archive")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveError(f"archive member {name!r} is not a regular file: refusing the archive")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"archive member {name!r} is encrypted: unpack it yourself and pass the folder")
        if info.is_dir():
            continue
        if info.file_size > 1 << 20 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise ArchiveError(f"archive member {name!r} expands {info.compress_size:,} bytes to {info.file_size:,} "
                               f"(a zip bomb?): refusing the archive")
        yield _Member(name, info.file_size, info)


def _tar_members(tf: tarfile.TarFile, limits: Limits, archive: Path) -> Iterable[_Member]:
    count = 0
    for info in tf:  # one header at a time, so a bomb is stopped at its first oversized member
        count += 1
        if count > limits.max_members:
            raise ArchiveError(f"{archive} has more than the {limits.max_members} members allowed")
        name = check_member_name(info.name)
        if info.issym() or info.islnk():
            raise ArchiveError(f"archive member {name!r} is a {'symbolic' if info.issym() else 'hard'} link "
                               f"(to {info.linkname!r}): refusing the archive")
        if info.isdir():
            continue
        if not info.isreg():
            raise ArchiveError(f"archive member {name!r} is not a regular file: refusing the archive")
        yield _Member(name, info.size, info)


def _checked(members: Iterable[_Member], limits: Limits, archive: Path) -> list[_Member]:
    total, out = 0, []
    for member in members:
        if member.size > limits.max_file_bytes:
            raise ArchiveError(f"archive member {member.name!r} is {member.size:,} bytes, over the "
                               f"{limits.max_file_bytes:,}-byte limit: refusing the archive")
        total += member.size
        if total > limits.max_total_bytes:
            raise ArchiveError(f"{archive} unpacks to more than {limits.max_total_bytes:,} bytes: refusing the archive")
        out.append(member)
    return out


def _write_wanted(members: list[_Member], wanted: list[str], dest: Path, open_member, limits: Limits,
                  archive: Path) -> dict[str, Path]:
    by_name: dict[str, list[_Member]] = {}
    for member in members:
        base = PurePosixPath(member.name).name
        if not member.name.startswith(_IGNORED_PREFIXES) and not base.startswith("._"):
            by_name.setdefault(base, []).append(member)
    written = {}
    for name in wanted:
        found = by_name.get(name, [])
        if len(found) != 1:
            listing = ", ".join(sorted(m.name for m in members)[:12]) or "nothing"
            problem = f"holds no {name}" if not found else \
                f"holds {name} {len(found)} times ({', '.join(m.name for m in found)})"
            raise ArchiveError(f"{archive} {problem}; it has: {listing}")
        source = open_member(found[0])
        if source is None:
            raise ArchiveError(f"archive member {found[0].name!r} cannot be read")
        with source:
            written[name] = _copy_limited(source, dest / name, min(found[0].size, limits.max_file_bytes), found[0].name)
    return written


def _copy_limited(source: IO[bytes], path: Path, limit: int, member: str) -> Path:
    """Copy at most ``limit`` bytes to a new file ``path`` (never following or replacing a link)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    done = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(CHUNK):
            done += len(chunk)
            if done > limit:
                raise ArchiveError(f"archive member {member!r} unpacks to more than its declared {limit:,} bytes: "
                                   f"refusing the archive")
            out.write(chunk)
    return path
