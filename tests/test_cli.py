"""The mfs-fast command line, run as a user runs it (a separate process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mfs_fast import native
from mfs_fast.cli import main


def mfs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mfs_fast", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def converted(official_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted")
    proc = mfs("convert", "--swap", official_dir / "MobileFaceSwap_224.pdparams",
               "--arcface", official_dir / "arcface.pdparams", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} >= {"manifest.json", "swap.safetensors", "identity.safetensors"}
    return out


@pytest.mark.parametrize("weights", ["official", "converted"])
def test_aligned_swap_matches_official_png(weights, official_dir, converted, aligned_pair, official_reference,
                                           tmp_path):
    """OUT.png within 2/255 of what official image_test.py (merge_result=False) writes. The swap
    itself is compared, so without the watermark (added after it; tests/watermark/ checks it)."""
    _, target, source_png, target_png = aligned_pair
    folder = official_dir if weights == "official" else converted
    out, mask_out = tmp_path / "out.png", tmp_path / "mask.png"
    proc = mfs("swap", "--aligned", "--source", source_png, "--target", target_png, "--weights", folder,
               "-o", out, "--mask-out", mask_out, "--no-watermark")
    assert proc.returncode == 0, proc.stderr
    assert "mfs-fast: warning: watermark off" in proc.stderr
    assert main(["verify", str(out)]) == 1  # opted out: neither mark
    result = cv2.imread(str(out))
    assert result.shape == (224, 224, 3)
    diff = np.abs(result.astype(int) - official_reference["png"].astype(int))
    assert diff.max() <= 2, f"max difference {diff.max()}/255"
    assert np.abs(result.astype(int) - target.astype(int)).max() > 8  # the swap changed the image
    mask = cv2.imread(str(mask_out), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (224, 224)
    assert np.abs(mask.astype(float) - official_reference["mask"] * 255).max() <= 1


def test_swap_errors_are_specific(converted, aligned_pair, tmp_path):
    _, _, source_png, target_png = aligned_pair
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(source_png.read_bytes()[:200])
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((100, 120, 3), np.uint8))
    cases = {
        "is a corrupt or truncated PNG": ("--source", corrupt, "--target", target_png, "--weights", converted),
        "image not found": ("--source", tmp_path / "nope.png", "--target", target_png, "--weights", converted),
        "target is 120x100; --aligned expects a square aligned face crop": (
            "--source", source_png, "--target", small, "--weights", converted),
        "holds no weights": ("--source", source_png, "--target", target_png, "--weights", tmp_path),
    }
    for message, args in cases.items():
        proc = mfs("swap", "--aligned", *args, "-o", tmp_path / "out.png")
        assert proc.returncode == 2, (message, proc.stderr)
        assert message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()


def test_refuses_to_overwrite_an_input(converted, aligned_pair, tmp_path):
    _, _, source_png, target_png = aligned_pair
    target_copy = tmp_path / "target.png"
    target_copy.write_bytes(target_png.read_bytes())
    before = target_copy.read_bytes()
    proc = mfs("swap", "--aligned", "--source", source_png, "--target", target_copy, "--weights", converted,
               "-o", target_copy)
    assert proc.returncode == 2 and "refusing to overwrite the input" in proc.stderr
    assert target_copy.read_bytes() == before


def test_convert_refuses_hostile_file(tmp_path):
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    evil = tmp_path / "MobileFaceSwap_224.pdparams"
    evil.write_bytes(pickle.dumps({"a": Evil()}))
    proc = mfs("convert", "--swap", evil, "--arcface", evil, "-o", tmp_path / "out")
    assert proc.returncode == 2 and "refusing to load" in proc.stderr


def test_info_prints_measured_counts():
    proc = mfs("info", "--size", "256")
    assert proc.returncode == 0, proc.stderr
    per_frame = next(line for line in proc.stdout.splitlines() if line.startswith("per frame"))
    params, deployed, gmacs = per_frame.split()[-3:]
    assert params == "496,462" and deployed == "495,972"
    assert gmacs == "0.435"


def test_doctor_lists_backends_and_default():
    proc = mfs("doctor")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith("  ")}
    assert "usable" in lines["torch"] and "usable" in lines["onnxruntime"]
    assert "unusable" in lines["tensorrt"] and "Swapper default: first usable of fused, torch" in proc.stdout
    assert ("usable" if native.AVAILABLE else "unusable") in lines["fused"]
    assert "built in" in lines["blazeface"]
    assert "needs an SCRFD .onnx model file: --detector PATH.onnx, or set MFS_FAST_SCRFD_MODEL" in lines["scrfd"]


def test_doctor_reports_every_registry_alike(capsys):
    from mfs_fast.backends._registry import BACKENDS
    from mfs_fast.cli import main
    from mfs_fast.eval.methods import EVAL_METHODS
    from mfs_fast.face.detectors import DETECTORS
    from mfs_fast.identity import IDENTITY_ENCODERS
    from mfs_fast.train.teacher import TEACHERS

    assert main(["doctor"]) == 0
    sections: dict[str, list[list[str]]] = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("  "):
            rows.append(line.split(maxsplit=2))
        elif line.endswith(":"):
            rows = sections.setdefault(line, [])
    expected = {
        "IDN backends (preference order):": BACKENDS,
        "face detectors (--detector):": DETECTORS,
        "identity encoders (--identity-encoder):": IDENTITY_ENCODERS,
        "training teachers (teacher.kind in a train config):": TEACHERS,
        "evaluation methods (mfs-fast eval --methods):": EVAL_METHODS,
    }
    assert set(sections) == set(expected)
    for title, registry in expected.items():
        assert {row[0] for row in sections[title]} >= set(registry.names()), title
        for name, usable, reason in sections[title]:  # name, usable or not, then the note or the reason
            assert usable in ("usable", "unusable") and reason.strip(), (title, name)
            assert (usable == "usable") == (registry.unavailable_reason(name) is None), (title, name)


def test_bench_json_reports_every_backend():
    import json

    proc = mfs("bench", "--rounds", "3", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["backend"]: row for row in json.loads(proc.stdout)}
    assert set(rows) >= {"torch", "onnxruntime"}
    for row in rows.values():
        assert row["median_ms"] > 0 and row["max_abs_diff"] <= 1e-4
