"""Stopping a video transcode (Ctrl-C, SIGTERM, KeyboardInterrupt or SystemExit from inside)
leaves no output, no hidden temporary and no ffmpeg process behind.

The signal tests run a real process (python + transcode with a slow frame function, as the CLI
does it: inside ``terminate_raises_interrupt``) and signal it once frames flow. The CLI's own
exit codes and messages for the same stops are tested in test_bad_inputs.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mfs_fast.media import ffmpeg_exe, transcode

CHILD = """
import sys, time
from mfs_fast.signals import Terminated, terminate_raises_interrupt
from mfs_fast.media import transcode

def slow(frame, seen=[0]):
    seen[0] += 1
    if seen[0] == 5:
        print("started", flush=True)
    time.sleep(0.02)
    return frame

try:
    with terminate_raises_interrupt():
        transcode(sys.argv[1], sys.argv[2], slow, progress=False)
except Terminated:
    sys.exit(143)
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """24 s at 25 fps (160x120, with audio): far longer than any test lets it run."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                           "-f", "lavfi", "-i", "testsrc2=s=160x120:r=25", "-f", "lavfi", "-i", "sine=d=24",
                           "-frames:v", "600", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return path


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain ``text`` (this one's excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and "ffmpeg" in cmdline:
            found.append(cmdline)
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for leftover ffmpeg processes")
@pytest.mark.parametrize("how, status", [
    ("SIGINT to the process group, as a terminal's Ctrl-C", 130),
    ("SIGTERM to the process", 143),
], ids=["ctrl-c", "sigterm"])
def test_a_stopped_transcode_leaves_no_file_and_no_ffmpeg(long_clip, tmp_path, how, status):
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    # a session of its own, so the group signal below cannot reach pytest
    proc = subprocess.Popen([sys.executable, str(script), str(long_clip), str(out / "swapped.mp4")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "started", proc.communicate(timeout=60)
        running = processes_mentioning(str(out))
        assert running, "the encoder should be running now (else this test cannot see leftovers)"
        if how.startswith("SIGINT"):
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err
    assert err.strip() == ""  # no traceback, no warning
    assert list(out.iterdir()) == []
    deadline = time.monotonic() + 5
    while processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(tmp_path)) == []
    assert processes_mentioning(str(long_clip)) == []


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit], ids=["KeyboardInterrupt", "SystemExit"])
def test_interrupt_from_inside_removes_the_temporary(long_clip, tmp_path, stop):
    def stop_at_20(frame: np.ndarray, seen=[0]) -> np.ndarray:
        seen[0] += 1
        if seen[0] == 20:
            assert [p.name for p in tmp_path.iterdir()]  # the temporary exists by now
            raise stop()
        return frame

    with pytest.raises(stop):
        transcode(long_clip, tmp_path / "out.mp4", stop_at_20, progress=False)
    assert list(tmp_path.iterdir()) == []
