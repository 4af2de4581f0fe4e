"""``mfs-fast batch`` on the local engine: folders and manifests, results.jsonl, split videos joined
exactly, a corrupt input that fails alone, a worker killed mid-video, Ctrl-C and --resume.

Real small media throughout (tests/batch_media.py): 256 x 256 clips of a drifting face with audio
and photos of it; each CLI run is a subprocess with spawned worker processes.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from batch_media import (children_running, face_clip, face_photo, frames_of, kill_mid_video, mfs_process, mfs_run,
                         pending_files, same_frames, single_process_swap, wait_for)
from sample_media import audio_md5

from mfs_fast.batch import read_results
from mfs_fast.batch.jobs import WORK_NAME, collect_items
from mfs_fast.cli import main
from mfs_fast.errors import MfsError


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("batch_media")
    return {"source": face_photo(folder / "source.png"), "photo": face_photo(folder / "photo.jpg", flip=True),
            "clip": face_clip(folder / "clip.mp4", 90), "keyed": face_clip(folder / "keyed.mp4", 90, gop=15)}


def hidden_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


def results_by_output(out: Path) -> dict[str, list[dict]]:
    lines: dict[str, list[dict]] = {}
    for line in read_results(out):
        lines.setdefault(line["output"], []).append(line)
    return lines


def test_manifest_rows_give_items_and_bad_manifests_one_line(tmp_path, media, capsys):
    manifest = tmp_path / "job.csv"
    manifest.write_text(f"input,output,source\n{media['photo']},a/photo.png,\n{media['clip']},,{media['source']}\n")
    items, _ = collect_items(manifest, tmp_path / "out")
    assert [item.key for item in items] == ["a/photo.png", "clip.mp4"]
    assert items[1].source == media["source"] and items[0].source is None
    for text, says in [("input,output\nx.jpg,../up.jpg\n", "inside the output folder"),
                       ("input,output\nx.jpg,o.jpg\ny.jpg,o.jpg\n", "also the output of line 2"),
                       ("file,out\nx.jpg,o.jpg\n", "needs input and output"),
                       ("input,output\n", "has no rows")]:
        manifest.write_text(text)
        with pytest.raises(MfsError, match=says):
            collect_items(manifest, tmp_path / "out")
    assert main(["batch", str(manifest), "--source", str(media["source"]), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no rows" in err[0], err


def test_a_folder_batch_mirrors_the_tree_records_each_item_and_goes_past_a_corrupt_file(tmp_path, media):
    job, out = tmp_path / "job", tmp_path / "out"
    (job / "sub").mkdir(parents=True)
    shutil.copy(media["photo"], job / "photo.jpg")
    shutil.copy(media["photo"], job / "sub" / "photo.webp.bin")  # an image by content, not by name
    shutil.copy(media["clip"], job / "sub" / "clip.mp4")
    shutil.copy(media["keyed"], job / "keyed.mp4")
    (job / "broken.mp4").write_bytes(media["clip"].read_bytes()[:4000])
    (job / "notes.txt").write_text("not media")
    run = mfs_run("batch", job, "--source", media["source"], "-o", out, "--workers", 2, "--segment-seconds", 1,
                  "--quiet")
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("mfs-fast: error:") == 1 and "1 item(s) failed" in run.stderr
    assert "left out 1 file(s)" in run.stderr and "notes.txt" in run.stderr
    results = results_by_output(out)
    assert set(results) == {"photo.jpg", "sub/photo.webp.png", "sub/clip.mp4", "keyed.mp4", "broken.mp4"}
    broken = results.pop("broken.mp4")[0]
    assert broken["status"] == "failed" and "broken.mp4" in broken["error"] and not (out / "broken.mp4").exists()
    for key, (line,) in results.items():
        assert line["status"] == "done" and line["error"] is None and (out / key).is_file(), line
        assert set(line) == {"input", "output", "status", "faces", "frames", "seconds", "error", "attempts"}
    assert results["sub/clip.mp4"][0]["frames"] == 90 and results["sub/clip.mp4"][0]["faces"] == 90
    # keyed.mp4 (keyframes every 15 frames, 3 s) went as three 1 s parts, joined without re-encoding
    keyed_in, keyed_out = frames_of(media["keyed"]), frames_of(out / "keyed.mp4")
    assert [t for t, _ in keyed_out] == [t for t, _ in keyed_in]
    assert audio_md5(out / "keyed.mp4") == audio_md5(media["keyed"])
    assert not hidden_files(out) and not (out / WORK_NAME).exists()


def test_a_worker_killed_mid_video_is_retried_and_the_output_matches_one_process(tmp_path, media):
    job, out = tmp_path / "job", tmp_path / "out"
    job.mkdir()
    shutil.copy(media["clip"], job / "clip.mp4")
    proc = mfs_process("batch", job, "--source", media["source"], "-o", out, "--workers", 1, "--threads", 1, "--quiet")
    try:
        kill_mid_video(out, "clip.mp4", lambda: children_running(proc.pid, "spawn_main"))
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    (line,) = read_results(out)
    assert line["status"] == "done" and line["attempts"] == 2, line
    assert not hidden_files(out)
    # both H.264 from the same frames with the same encoder settings: decoded, equal frame for frame
    same_frames(out / "clip.mp4", single_process_swap(media["clip"], tmp_path / "single.mp4", media["source"]))


def test_ctrl_c_stops_the_workers_leaves_no_partial_output_and_resume_finishes(tmp_path, media):
    job, out = tmp_path / "job", tmp_path / "out"
    job.mkdir()
    for name in ("a1.jpg", "a2.jpg", "c.jpg"):
        shutil.copy(media["photo"], job / name)
    shutil.copy(media["clip"], job / "b.mp4")
    args = ("batch", job, "--source", media["source"], "-o", out, "--workers", 1, "--quiet")
    proc = mfs_process(*args)
    try:
        wait_for(lambda: pending_files(out, "b.mp4"), 120, "the video to be written")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and err.count("mfs-fast: error:") == 1
    assert not (out / "b.mp4").exists() and not hidden_files(out)
    assert {key for key, lines in results_by_output(out).items()} == {"a1.jpg", "a2.jpg"}

    refused = mfs_run(*args)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = mfs_run(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "2 already done (skipped)" in resumed.stdout
    results = results_by_output(out)
    assert {key: len(lines) for key, lines in results.items()} == {"a1.jpg": 1, "a2.jpg": 1, "b.mp4": 1, "c.jpg": 1}
    assert all(lines[0]["status"] == "done" for lines in results.values())
    assert json.loads((out / "results.jsonl").read_text().splitlines()[-1])["status"] == "done"
    assert not hidden_files(out)
