"""Outputs that appear complete or not at all: a hidden temporary next to the target, renamed onto
it only when finished, removed on any failure or interrupt.

One home for the temporary-file + ``os.replace`` dance of every output written outside the
training and checkpoint code: videos, images, cached graphs and engines, compiled libraries
(:class:`PendingFile`, :func:`atomic_path`, :func:`atomic_write`). Why not ``tempfile.mkstemp``: its files are 0600, so the renamed output
would be unreadable to the group/others whatever the umask says; here the temporary is created
with mode 0666 and the umask applies, like any new file. Why next to the target: ``os.replace``
is atomic only within one file system.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import MediaError

PathLike = str | os.PathLike


class PendingFile:
    """A reserved hidden temporary (``.NAME.RANDOM.TAG`` in ``dst``'s folder) that becomes ``dst``.

    ``path`` exists (empty) once this returns; write it by any means (e.g. an ffmpeg process given
    ``-y``), then :meth:`commit`, or :meth:`discard` it. As a context manager it discards on any
    exception, KeyboardInterrupt and SystemExit included, and never commits by itself. OS errors
    become ``error`` (a :class:`MediaError` subclass) naming the folder and what to do.
    """

    def __init__(self, dst: PathLike, tag: str = "part", error: type[MediaError] = MediaError):
        self.dst = Path(dst)
        self.error = error
        folder = self.dst.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / f".{self.dst.name}.{secrets.token_hex(6)}.{tag}"
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as exc:
            raise error(f"cannot write to the folder {folder} ({exc.strerror or exc}): "
                        f"choose a writable output path") from None
        self._done = False

    def commit(self) -> Path:
        """Rename the temporary onto ``dst`` (atomically replacing an older file); returns ``dst``."""
        try:
            os.replace(self.path, self.dst)
        except OSError as exc:
            self.discard()
            raise self.error(f"cannot save {self.dst.name} in the folder {self.dst.parent} "
                             f"({exc.strerror or exc}): choose a writable output path") from None
        self._done = True
        return self.dst

    def discard(self) -> None:
        """Remove the temporary; never raises (a failure is a warning naming the file to delete), so
        the error that caused the discard is the one the caller sees."""
        if self._done:
            return
        self._done = True
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            warnings.warn(f"could not remove the unfinished temporary {self.path} ({exc.strerror or exc}); "
                          f"delete it by hand", stacklevel=2)

    def __enter__(self) -> PendingFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()


def discard_pending(dst: PathLike) -> list[Path]:
    """Remove the temporaries a :class:`PendingFile` for ``dst`` left behind when its process was
    killed outright (SIGKILL, a lost machine: nothing could run its cleanup); returns them. Only
    names of the form ``.NAME.RANDOM.TAG`` are touched."""
    dst = Path(dst)
    pattern = re.compile(rf"\.{re.escape(dst.name)}\.[0-9a-f]{{12}}\.\w+")
    removed = []
    for path in dst.parent.glob(f".{glob.escape(dst.name)}.*") if dst.parent.is_dir() else ():
        if pattern.fullmatch(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextmanager
def atomic_path(dst: PathLike, tag: str = "part", error: type[MediaError] = MediaError) -> Iterator[Path]:
    """A temporary path next to ``dst`` to write by any means; it becomes ``dst`` when the block ends
    without an exception, and is removed otherwise. ``tag`` ends its name (tools that pick a
    format by the file's suffix, like TVM's ``export_library``, need the right one)."""
    with PendingFile(dst, tag, error) as pending:
        yield pending.path
        pending.commit()


def atomic_write(dst: PathLike, data: bytes | str, error: type[MediaError] = MediaError) -> Path:
    """Write ``data`` (text as UTF-8) to ``dst`` all at once or not at all; returns ``dst``."""
    with atomic_path(dst, error=error) as path:
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(dst)
