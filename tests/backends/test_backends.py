"""Every IDN backend against the PyTorch reference; identity switches never rebuild."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from mfs_fast import Swapper
from mfs_fast.backends import BackendUnavailable, available_backends, backend_report, create_backend
from mfs_fast.backends.onnxruntime_backend import OnnxRuntimeBackend
from mfs_fast.errors import MfsError

from conftest import _astronaut_bgr

FP32_ATOL = 1e-4
COMPILED = [name for name in available_backends() if name != "torch"]


def random_identity(models):
    return models.identity_weights(torch.randn(1, 3, 112, 112))


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("size,batch", [(224, 1), (224, 3), (256, 2)])
def test_parity_with_torch_across_identity_switches(name, size, batch, official_models):
    reference = create_backend("torch", official_models)
    backend = create_backend(name, official_models)
    first, second = random_identity(official_models), random_identity(official_models)
    rng = np.random.default_rng()
    for identity in (first, second, first):  # back and forth
        backend.set_identity(identity)
        reference.set_identity(identity)
        images = rng.random((batch, 3, size, size), dtype=np.float32)
        ours, theirs = backend.run(images), reference.run(images)
        for a, b in zip(ours, theirs):
            assert a.shape == b.shape
            assert np.abs(a - b).max() <= FP32_ATOL


def test_building_a_backend_leaves_the_models_untouched(official_models, tmp_path, monkeypatch):
    monkeypatch.setenv("MFS_FAST_CACHE", str(tmp_path))  # force a fresh export
    state = {k: v.clone() for k, v in official_models.idn.state_dict().items()}
    modes = [m.training for m in official_models.idn.modules()]
    create_backend("onnxruntime", official_models)
    assert [m.training for m in official_models.idn.modules()] == modes
    assert all(torch.equal(v, official_models.idn.state_dict()[k]) for k, v in state.items())


def test_identity_change_does_not_rebuild(official_models):
    backend = create_backend("onnxruntime", official_models)
    built = OnnxRuntimeBackend.sessions_created
    for _ in range(3):
        backend.set_identity(random_identity(official_models))
        backend.run(np.random.rand(1, 3, 224, 224).astype(np.float32))
    assert OnnxRuntimeBackend.sessions_created == built


def test_run_before_identity_is_an_error(official_models):
    with pytest.raises(MfsError, match="set_identity"):
        create_backend("onnxruntime", official_models).run(np.zeros((1, 3, 224, 224), np.float32))


@pytest.mark.skipif("tensorrt" in available_backends(), reason="needs 'tensorrt' unusable, and it works here")
def test_preference_list_falls_back_with_a_logged_reason(official_models, caplog, monkeypatch):
    from mfs_fast.backends import _factory

    monkeypatch.setattr(_factory, "_LOGGED", set())
    with caplog.at_level(logging.INFO, logger="mfs_fast.backends"):
        backend = create_backend(["tensorrt", "onnxruntime", "torch"], official_models)
    assert backend.name == "onnxruntime"
    assert "'tensorrt' skipped" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mfs_fast.backends"):
        create_backend(["tensorrt", "onnxruntime"], official_models)
    assert caplog.text == ""  # logged once per process
    with pytest.raises(BackendUnavailable, match="'tensorrt' cannot be used: "):
        create_backend(["tensorrt", "torch"], official_models, strict=True)
    with pytest.raises(BackendUnavailable, match="unknown backend 'nope'"):
        create_backend("nope", official_models)


def test_report_lists_every_backend():
    report = {name: (usable, reason) for name, usable, reason in backend_report()}
    assert report["torch"] == (True, "ok") and report["onnxruntime"][0]
    assert set(report) >= {"tensorrt", "tvm", "onnxruntime", "torch"}


def test_swapper_on_onnxruntime_matches_torch(official_models):
    from mfs_fast.face import create_detector

    detector = create_detector("blazeface")
    photo = _astronaut_bgr()
    fast = Swapper(photo, official_models, backend=["onnxruntime", "torch"], detector=detector)
    slow = Swapper(photo, official_models, backend="torch", detector=detector)
    assert fast.backend.name == "onnxruntime"
    assert np.abs(fast.swap(photo).astype(int) - slow.swap(photo).astype(int)).max() <= 1


def test_auto_picks_the_fastest_and_caches_the_measurement(official_models, tmp_path, monkeypatch):
    from mfs_fast.backends import benchmark
    from mfs_fast.backends import auto

    monkeypatch.setenv("MFS_FAST_CACHE", str(tmp_path))
    measured = []
    real = benchmark.benchmark_backends

    def counting(*args, **kwargs):
        measured.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(benchmark, "benchmark_backends", counting)
    first = auto.fastest_backend(threads=1, rounds=3)
    assert first in available_backends() and len(measured) == 1
    cached = json.loads((tmp_path / "auto_backend.json").read_text())
    (entry,) = cached.values()
    assert entry["backend"] == first == min(entry["median_ms"], key=entry["median_ms"].get)
    assert create_backend("auto", official_models, threads=1).name == first
    assert len(measured) == 1  # the second choice came from the cache


@pytest.mark.skipif("tvm" not in available_backends(), reason="apache-tvm not installed")
def test_tvm_builds_once_per_shape_and_caches_on_disk(official_models, tmp_path, monkeypatch):
    from mfs_fast.backends.tvm_backend import TVMBackend

    monkeypatch.setenv("MFS_FAST_CACHE", str(tmp_path))
    backend = create_backend("tvm", official_models, threads=1)
    image = np.random.rand(1, 3, 224, 224).astype(np.float32)
    before = TVMBackend.builds
    for _ in range(3):  # identity changes: no build after the first
        backend.set_identity(random_identity(official_models))
        backend.run(image)
    assert TVMBackend.builds == before + 1
    fresh = create_backend("tvm", official_models, threads=1)  # a new process would do the same
    fresh.set_identity(random_identity(official_models))
    fresh.run(image)
    assert TVMBackend.builds == before + 1  # loaded from the disk cache
    assert len(list((tmp_path / "tvm").glob("*.so"))) == 1


def test_tuning_log_naming_and_lookup():
    from mfs_fast.backends.tvm_tuning import TUNING_LOGS, log_dir, target_name

    x86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64-v3", "num-cores": 2}
    assert target_name(x86) == "llvm-x86_64-x86-64-v3-2c"
    arm = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"], "num-cores": 8}
    assert target_name(arm) == "llvm-aarch64-neon-8c"
    assert log_dir(x86) == TUNING_LOGS / "llvm-x86_64-x86-64-v3-2c"


@pytest.mark.skipif("tvm" not in available_backends(), reason="apache-tvm not installed")
def test_committed_tuning_log_is_part_of_the_build(official_models, tmp_path, monkeypatch):
    """With a log for this machine the build is tuned (the parity tests above then cover the tuned
    code); a changed log gives a different cached library, never a stale one."""
    from mfs_fast.backends import tvm_backend
    from mfs_fast.backends.tvm_tuning import log_dir, log_hash

    if log_hash(tvm_backend.host_target()) is None:
        pytest.skip(f"no tuning log committed for this machine ({log_dir(tvm_backend.host_target()).name})")
    monkeypatch.setenv("MFS_FAST_CACHE", str(tmp_path))
    backend = create_backend("tvm", official_models, threads=1)
    tuned = backend._library_path((1, 3, 224, 224))
    monkeypatch.setattr(tvm_backend, "log_hash", lambda target: None)
    assert backend._library_path((1, 3, 224, 224)) != tuned


def test_host_target_prefers_a_level_with_a_committed_log():
    """An AVX-512 CPU also runs the committed x86-64-v3 schedules: they are taken over untuned
    v4 code; tuning (prefer_tuned=False) targets the CPU's own highest level."""
    from mfs_fast.backends.tvm_backend import host_target
    from mfs_fast.backends.tvm_tuning import TUNING_LOGS, log_hash

    flags = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "").split()
    if not {"avx2", "fma"} <= set(flags):
        pytest.skip("not an x86-64 CPU with AVX2 and FMA")
    highest = host_target(prefer_tuned=False)
    assert highest["mcpu"] == ("x86-64-v4" if "avx512f" in flags else "x86-64-v3")
    chosen = host_target()
    v3 = dict(highest, mcpu="x86-64-v3")
    if log_hash(highest) is not None:
        assert chosen == highest
    elif log_hash(v3) is not None:
        assert chosen == v3, f"{TUNING_LOGS} has a v3 log for {v3['num-cores']} cores"
    else:
        assert chosen == highest
