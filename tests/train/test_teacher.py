"""Training teachers are a registry: the config's teacher.kind picks one, doctor lists them."""

from __future__ import annotations

import importlib.util

import pytest

from mfs_fast.errors import MfsError
from mfs_fast.train.teacher import TEACHERS, create_teacher


def test_teacher_kinds_are_a_registry():
    assert TEACHERS.names() == ["mfs", "onnx", "mesh-warp"]
    assert create_teacher({}) is None  # no distillation
    with pytest.raises(MfsError) as caught:
        create_teacher({"kind": "gan"})
    assert str(caught.value) == "unknown teacher kind 'gan'; choose one of mfs, onnx, mesh-warp"
    with pytest.raises(MfsError, match="unknown teacher kind \\['mfs'\\]; choose one of"):  # TOML gives lists too
        create_teacher({"kind": ["mfs"]})
    with pytest.raises(MfsError, match="mesh-warp teacher needs the cache's average mesh"):
        create_teacher({"kind": "mesh-warp"})


def test_onnx_teacher_needs_onnxruntime(monkeypatch, tmp_path):
    assert TEACHERS.unavailable_reason("onnx") is None  # installed with the project
    with pytest.raises(MfsError, match="teacher ONNX file not found"):
        create_teacher({"kind": "onnx", "path": str(tmp_path / "absent.onnx")})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert "onnx" not in TEACHERS.available()
    with pytest.raises(MfsError, match="teacher kind 'onnx' cannot be used: needs onnxruntime: pip install onnxruntime"):
        create_teacher({"kind": "onnx", "path": str(tmp_path / "absent.onnx")})
