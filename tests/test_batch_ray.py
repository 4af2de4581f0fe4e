"""``mfs-fast batch --engine ray`` on a real Ray cluster that the test starts on 127.0.0.1 (``ray start
--head``, 2 CPUs, no dashboard) and stops: a batch of photos and two videos (one cut into parts
and joined), and an actor SIGKILLed mid-video whose task is retried to the single-process result."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from batch_media import (face_clip, face_photo, frames_of, kill_mid_video, mfs_process, mfs_run, same_frames,
                         single_process_swap)
from conftest import ROOT
from sample_media import audio_md5

from mfs_fast.batch import read_results
from mfs_fast.batch.jobs import WORK_NAME

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'mfs_fast[ray]' to run the Ray engine tests")
RAY = Path(sys.executable).with_name("ray")
START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> str:
    """HOST:PORT of a fresh 2-CPU Ray head on 127.0.0.1, stopped after the module's tests. Ray's token
    authentication (on by default since Ray 2.5x) is off for this throw-away, loopback-only cluster, in
    it and in the batch drivers the tests start (they inherit os.environ)."""
    port = _free_port()
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        start = subprocess.run([str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                                "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard=false",
                                "--disable-usage-stats"], capture_output=True, text=True, env=env,
                               timeout=START_TIMEOUT_S)
        if start.returncode != 0:
            pytest.skip(f"the Ray runtime cannot start here: {(start.stderr or start.stdout).strip()[-400:]}")
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, timeout=60)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ray_media")
    return {"source": face_photo(folder / "source.png"), "photo": face_photo(folder / "photo.jpg", flip=True),
            "clip": face_clip(folder / "clip.mp4", 60), "keyed": face_clip(folder / "keyed.mp4", 90, gop=15)}


def test_a_batch_of_photos_and_two_videos_on_a_ray_cluster(cluster, media, tmp_path):
    job, out = tmp_path / "job", tmp_path / "out"
    (job / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.jpg", "sub/c.jpg"):
        shutil.copy(media["photo"], job / name)
    shutil.copy(media["clip"], job / "clip.mp4")
    shutil.copy(media["keyed"], job / "sub" / "keyed.mp4")
    run = mfs_run("batch", job, "--source", media["source"], "-o", out, "--engine", "ray", "--address", cluster,
                  "--segment-seconds", 1, "--quiet")
    assert run.returncode == 0, run.stderr
    lines = {line["output"]: line for line in read_results(out)}
    assert set(lines) == {"a.jpg", "sub/b.jpg", "sub/c.jpg", "clip.mp4", "sub/keyed.mp4"}
    assert all(line["status"] == "done" and (out / key).is_file() for key, line in lines.items())
    assert lines["clip.mp4"]["frames"] == 60 and lines["sub/keyed.mp4"]["frames"] == 90
    # the keyed clip went as three parts on the actors, joined without re-encoding, every frame at its time
    assert [t for t, _ in frames_of(out / "sub" / "keyed.mp4")] == [t for t, _ in frames_of(media["keyed"])]
    assert audio_md5(out / "sub" / "keyed.mp4") == audio_md5(media["keyed"])
    assert not list(out.rglob(".*")) and not (out / WORK_NAME).exists()


def _actor_pid() -> int | None:
    for process in psutil.process_iter(["cmdline"]):
        if "_SwapActor" in " ".join(process.info["cmdline"] or []):
            return process.pid
    return None


def test_an_actor_killed_mid_video_is_replaced_and_the_item_matches_one_process(cluster, media, tmp_path):
    job, out = tmp_path / "job", tmp_path / "out"
    job.mkdir()
    shutil.copy(media["clip"], job / "clip.mp4")
    proc = mfs_process("batch", job, "--source", media["source"], "-o", out, "--engine", "ray", "--address", cluster,
                       "--workers", 1, "--threads", 1, "--quiet")
    try:
        kill_mid_video(out, "clip.mp4", _actor_pid, timeout=150)
        _, err = proc.communicate(timeout=150)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    (line,) = read_results(out)
    assert line["status"] == "done" and line["attempts"] == 2, line
    assert not list(out.rglob(".*"))
    same_frames(out / "clip.mp4", single_process_swap(media["clip"], tmp_path / "single.mp4", media["source"]))
