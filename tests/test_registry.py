"""The one Registry type behind backends, detectors, identity encoders, teachers and eval methods:
create, gate on the probe, report alike."""

from __future__ import annotations

import pytest

from mfs_fast.errors import MfsError
from mfs_fast.registry import NOT_IMPLEMENTED, Registry, lookup_probe


class Refused(MfsError):
    pass


def test_create_lists_and_reports():
    parts: Registry[tuple] = Registry("part", error=Refused)
    parts.add("plain", lambda *a, **k: (a, k))
    parts.register("gone", probe=lambda: "needs a thing", note="never said")(lambda: None)
    parts.add("noted", tuple, note=lambda: "built in")
    assert parts.create("plain", 1, x=2) == ((1,), {"x": 2})
    assert parts.names() == ["plain", "gone", "noted"] and parts.available() == ["plain", "noted"]
    assert "gone" in parts and "other" not in parts
    with pytest.raises(Refused, match="part 'gone' cannot be used: needs a thing"):
        parts.create("gone")
    with pytest.raises(Refused, match=f"unknown part 'other': {NOT_IMPLEMENTED} \\(known: gone, noted, plain\\)"):
        parts.create("other")
    assert parts.report(["other", "noted"]) == [
        ("other", False, NOT_IMPLEMENTED), ("noted", True, "built in"), ("plain", True, "ok"),
        ("gone", False, "needs a thing")]


def test_copy_is_independent():
    parts: Registry[int] = Registry("part")
    parts.add("one", lambda: 1)
    twin = parts.copy()
    twin.add("two", lambda: 2)
    assert parts.names() == ["one"] and twin.names() == ["one", "two"]


def test_require_names_the_choices_in_one_line():
    parts: Registry[int] = Registry("part", error=Refused)
    parts.add("one", lambda: 1)
    parts.add("two", lambda: 2)
    assert parts.require("two").factory() == 2
    with pytest.raises(MfsError) as caught:
        parts.require("three")
    assert str(caught.value) == "unknown part 'three'; choose one of one, two"
    assert not isinstance(caught.value, Refused)  # an unknown name is the caller's mistake, not a missing part


def test_lookup_probe_reports_the_lookups_own_words():
    def missing():
        raise Refused("model.bin was not found: run ./run.sh setup")

    assert lookup_probe(missing, Refused)() == "model.bin was not found: run ./run.sh setup"
    assert lookup_probe(lambda: "found")() is None
    with pytest.raises(ValueError):  # any other failure is a bug, not a reason
        lookup_probe(lambda: int("x"), Refused)()


def test_every_kind_of_part_uses_it():
    from mfs_fast.backends._registry import BACKENDS
    from mfs_fast.eval.methods import EVAL_METHODS
    from mfs_fast.face.detectors import DETECTORS
    from mfs_fast.identity import IDENTITY_ENCODERS
    from mfs_fast.train.teacher import TEACHERS

    for registry in (BACKENDS, DETECTORS, IDENTITY_ENCODERS, TEACHERS, EVAL_METHODS):
        assert isinstance(registry, Registry)
    assert {"fused", "torch"} <= set(BACKENDS.names()) and {"blazeface", "scrfd"} <= set(DETECTORS.names())
    assert IDENTITY_ENCODERS.names() == ["dlib", "arcface", "faceres", "mobileface"]
    assert TEACHERS.names() == ["mfs", "onnx", "mesh-warp"]
    assert EVAL_METHODS.names() == ["model", "target", "paste-source", "mesh-warp"]
