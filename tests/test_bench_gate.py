"""The regression gate (bench/gate.py): FPS may fall at most 15 %, against a per-machine baseline."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from gate import regressions  # noqa: E402


def test_gate_rule():
    baseline = {"torch": 10.0, "onnxruntime": 12.0}
    assert regressions(baseline, {"torch": 11.5, "onnxruntime": 12.0}) == []  # 87 % of baseline FPS
    failures = regressions(baseline, {"torch": 12.0, "onnxruntime": 10.0})  # torch at 83 %
    assert len(failures) == 1 and failures[0].startswith("torch: FPS at 83%")
    assert regressions(baseline, {"tvm": 99.0}) == []  # no baseline yet for a new backend


def test_baselines_are_per_machine_tag():
    """One committed baseline per kind of machine: the calibration ratio does not carry over
    between CPU kinds (an AVX-512 Xeon read 65-84 % of the AVX2 EPYC's baseline on unchanged code)."""
    from gate import load_baselines, machine_tag

    tag = machine_tag()
    arch, isa, cores = tag.rsplit("-", 2)
    assert arch and isa and cores.endswith("c") and int(cores[:-1]) >= 1
    machines = load_baselines()
    assert "x86_64-avx2-2c" in machines
    for name, entry in machines.items():
        assert {"torch", "fused"} <= set(entry["relative_latency"]), name
        assert all(value > 0 for value in entry["relative_latency"].values()), name


def test_baselines_from_another_calibration_do_not_apply(tmp_path, monkeypatch):
    """A baseline measured against an older calibration workload would gate on a meaningless ratio."""
    import json

    import gate

    stored = {"machines": {"old-tag": {"relative_latency": {"fused": 4.6}},
                           "new-tag": {"relative_latency": {"fused": 2.1}, "calibration": gate.CALIBRATION}}}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(stored))
    monkeypatch.setattr(gate, "BASELINE", path)
    assert set(gate.load_baselines()) == {"new-tag"}
