"""The one Registry type behind backends and detectors: create, gate on the probe, report alike."""

from __future__ import annotations

import pytest

from mfs_fast.errors import MfsError
from mfs_fast.registry import NOT_IMPLEMENTED, Registry


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


def test_backends_and_detectors_use_it():
    from mfs_fast.backends._registry import BACKENDS
    from mfs_fast.face.detectors import DETECTORS

    assert isinstance(BACKENDS, Registry) and isinstance(DETECTORS, Registry)
    assert {"fused", "torch"} <= set(BACKENDS.names()) and {"blazeface", "scrfd"} <= set(DETECTORS.names())
