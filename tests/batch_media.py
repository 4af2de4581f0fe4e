"""What the batch tests share (tests/test_batch.py, tests/test_batch_ray.py): small real media, the CLI
in a subprocess, a worker killed mid-video, and frame-for-frame comparison."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

from conftest import ROOT, _astronaut_bgr
from sample_media import drifting_face_clip, ffmpeg

SIZE = 256


def face_photo(path: Path, flip: bool = False) -> Path:
    """The astronaut's face on a 256 x 256 photo (mirrored with ``flip``)."""
    face = cv2.resize(_astronaut_bgr()[0:300, 90:390], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), cv2.flip(face, 1) if flip else face)
    return path


def face_clip(path: Path, frames: int, gop: int = 250, audio: bool = True) -> Path:
    """A 256 x 272, 30 fps H.264 clip of a drifting face, keyframes every ``gop`` frames, with a sine tone."""
    raw = path.with_name(f"raw_{path.name}")
    drifting_face_clip(raw, SIZE, 272, [10 + (i % 20) for i in range(frames)], 0, 90)
    tone = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={frames / 30:.3f}"] if audio else []
    ffmpeg("-i", raw, *tone, "-map", "0:v", *(["-map", "1:a", "-c:a", "aac"] if audio else []),
           "-c:v", "libx264", "-preset", "ultrafast", "-g", gop, "-keyint_min", gop, "-sc_threshold", 0, path)
    raw.unlink()
    return path


def mfs_process(*args: object) -> subprocess.Popen:
    """``mfs-fast ARGS`` started in a subprocess (this checkout's package), output captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "mfs_fast", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def mfs_run(*args: object, timeout: float = 240) -> subprocess.CompletedProcess:
    proc = mfs_process(*args)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_for(condition, timeout: float, what: str):
    """Poll ``condition`` until it returns something true; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pending_files(folder: Path, name: str) -> list[Path]:
    """The hidden temporaries of ``name`` being written in ``folder`` (``.NAME.RANDOM.TAG``)."""
    return list(folder.glob(f".{name}.*"))


def kill_mid_video(out_dir: Path, name: str, worker_pid, timeout: float = 120) -> int:
    """SIGKILL the process ``worker_pid()`` names once the video ``name`` is being written in ``out_dir``
    (its temporary exists); returns the killed pid."""
    wait_for(lambda: pending_files(out_dir, name), timeout, f"{name} to be written in {out_dir}")
    pid = wait_for(worker_pid, 10, "the worker's pid")
    os.kill(pid, signal.SIGKILL)
    return pid


def children_running(parent: int, marker: str) -> int | None:
    """The pid of a descendant of ``parent`` whose command line contains ``marker``."""
    try:
        for child in psutil.Process(parent).children(recursive=True):
            if marker in " ".join(child.cmdline()):
                return child.pid
    except psutil.Error:
        return None
    return None


def single_process_swap(src: Path, dst: Path, source: Path) -> Path:
    """The reference: one Swapper, single-threaded like a batch worker given --threads 1, swap_video."""
    import torch

    from mfs_fast import Swapper

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Swapper(source, threads=1).swap_video(src, dst, progress=False)
    finally:
        torch.set_num_threads(previous)
    return dst


def frames_of(path: Path) -> list[tuple]:
    from mfs_fast.media import read_timed_frames

    return list(read_timed_frames(path))


def same_frames(a: Path, b: Path) -> None:
    """Decoded frames of ``a`` and ``b`` are identical, at identical times."""
    fa, fb = frames_of(a), frames_of(b)
    assert len(fa) == len(fb), (len(fa), len(fb))
    assert [t for t, _ in fa] == [t for t, _ in fb]
    differing = [i for i, ((_, x), (_, y)) in enumerate(zip(fa, fb)) if not np.array_equal(x, y)]
    assert not differing, f"frames {differing[:10]} differ"
