"""The ffmpeg processes behind :mod:`mfs_fast.media`: which binary, how it is started, run and stopped.

* **One binary.** Always the ffmpeg shipped by imageio-ffmpeg (:func:`ffmpeg_exe`); no system
  ffmpeg is assumed. Writing H.264 checks once that it has libx264 (:func:`_require_libx264`).
* **Its own process group.** ffmpeg runs in a session of its own (:func:`_popen`, :func:`_run`),
  so a terminal's Ctrl-C reaches only Python, which stops ffmpeg itself (:func:`_stop_process`)
  and removes what it wrote, rather than let it finish a partial file (see the Safety notes of
  :mod:`mfs_fast.media.writer`).
"""

from __future__ import annotations

import functools
import re
import subprocess
from typing import IO

from ..errors import VideoError

_PROBE_TIMEOUT_S = 120


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped by imageio-ffmpeg (no system ffmpeg is assumed)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # ImportError, or RuntimeError when the binary is missing
        raise VideoError(f"no ffmpeg binary: install imageio-ffmpeg ({exc})") from exc


@functools.lru_cache(maxsize=1)
def _require_libx264() -> None:
    """Fail early, once, when the ffmpeg binary cannot encode H.264 with libx264."""
    proc = _run([ffmpeg_exe(), "-hide_banner", "-encoders"])
    if not re.search(r"^\s*V\S*\s+libx264\s", proc.stdout, re.MULTILINE):
        raise VideoError(f"the ffmpeg binary {ffmpeg_exe()} has no libx264 encoder; cannot write H.264")


def _popen(args: list[str], **options) -> subprocess.Popen:
    """Start ffmpeg in a session (so a process group) of its own: a terminal's Ctrl-C then
    reaches only Python, which stops ffmpeg itself and removes what it wrote (see Safety in
    :mod:`mfs_fast.media.writer`); an ffmpeg that got the signal too would finish and close a
    partial file on its own."""
    return subprocess.Popen(args, start_new_session=True, **options)


def _run(args: list[str], timeout: float = _PROBE_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run an ffmpeg command to the end and capture its text output; an interrupt kills it."""
    try:
        return subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=timeout,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        raise VideoError(f"ffmpeg took over {timeout:.0f} s: {' '.join(args[:6])} ...") from exc


def _tail(text: str, lines: int = 4) -> str:
    """The last non-empty lines of ffmpeg's stderr, for error messages."""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(ffmpeg printed nothing)"


def _grow_pipe(pipe: IO[bytes], frame_bytes: int) -> None:
    """Let a pipe hold a whole frame (up to 1 MiB, the unprivileged Linux limit) so neither side waits
    for the other chunk by chunk; a no-op where the system does not allow it."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, min(max(frame_bytes, 1 << 16), 1 << 20))
    except (ImportError, AttributeError, OSError):
        pass


def _read_log(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode("utf-8", "replace")


def _stop_process(proc: subprocess.Popen) -> None:
    """Kill ``proc`` if it still runs, and reap it (its stdout stays open for a reader to drain)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()
