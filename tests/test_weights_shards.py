"""Sharded weights folders: files split under a size limit load like whole ones, and a missing or
damaged shard is one clear error (a lent GPU machine hands back files under 16 MiB only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mfs_fast import CheckpointError
from mfs_fast.checkpoints import load_weights, save_weights
from mfs_fast.checkpoints.native_format import MANIFEST, reshard_weights, stored_files
from mfs_fast.models import IDN, IIN, FaceSwapModels
from mfs_fast.identity.dlib_adapter import DlibAdaptedIdentity

STARTER = Path(__file__).resolve().parents[1] / "mfs_fast" / "weights" / "starter"
LIMIT = 6 << 20  # int8: swap.safetensors (~21 MB, largest tensor 4 MiB) in several shards, identity whole


def _same(a: FaceSwapModels, b: FaceSwapModels) -> None:
    for field in ("identity", "iin", "idn"):
        sa, sb = getattr(a, field).state_dict(), getattr(b, field).state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{field}.{key}"


def _shards(folder: Path) -> int:
    return len(json.loads((folder / MANIFEST).read_text())["files"]["swap.safetensors"]["shards"])


@pytest.fixture(scope="module")
def models() -> FaceSwapModels:
    """Random weights of the starter's layout (dlib adapter: identity.safetensors stays small)."""
    torch.manual_seed(0)
    return FaceSwapModels(DlibAdaptedIdentity(), IIN(), IDN()).eval()


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, models) -> Path:
    return save_weights(models, tmp_path_factory.mktemp("sharded") / "w", storage="int8", max_file_bytes=LIMIT)


def test_both_layouts_load_the_same_models(tmp_path, models, sharded):
    whole = save_weights(models, tmp_path / "whole", storage="int8")
    assert sorted(p.name for p in whole.iterdir()) == ["identity.safetensors", MANIFEST, "swap.safetensors"]
    names = sorted(p.name for p in sharded.iterdir())
    shards = [n for n in names if n.startswith("swap-")]
    assert len(shards) >= 4 and shards[0] == f"swap-00001-of-{len(shards):05d}.safetensors"
    assert "swap.safetensors" not in names and "identity.safetensors" in names
    assert all((sharded / n).stat().st_size <= LIMIT for n in names)
    manifest = json.loads((sharded / MANIFEST).read_text())
    assert manifest["version"] == 2 and json.loads((whole / MANIFEST).read_text())["version"] == 1
    assert [s["file"] for s in manifest["files"]["swap.safetensors"]["shards"]] == shards
    assert set(stored_files(manifest)) == set(names) - {MANIFEST}
    _same(load_weights(whole), load_weights(sharded))


def test_reshard_copies_stored_tensors_and_back(tmp_path, sharded):
    # sharded -> whole -> sharded again, the int8 tensors byte for byte, stale files removed
    whole = reshard_weights(sharded, tmp_path / "back", max_file_bytes=1 << 30)
    assert not any(p.name.startswith("swap-") for p in whole.iterdir())
    _same(load_weights(sharded), load_weights(whole))
    again = reshard_weights(whole, whole, max_file_bytes=LIMIT)  # in place: the whole file goes
    assert not (again / "swap.safetensors").exists()
    assert json.loads((again / MANIFEST).read_text())["files"] == json.loads((sharded / MANIFEST).read_text())["files"]


def test_bundled_starter_still_loads_and_shards_under_16_mib(tmp_path):
    manifest = json.loads((STARTER / MANIFEST).read_text())
    assert manifest["version"] == 1 and "shards" not in manifest["files"]["swap.safetensors"]
    copy = reshard_weights(STARTER, tmp_path / "starter", max_file_bytes=15 << 20)
    assert all(p.stat().st_size < 16 << 20 for p in copy.iterdir())
    assert len([p for p in copy.iterdir() if p.name.startswith("swap-")]) == 2
    _same(load_weights(STARTER), load_weights(copy))


def test_missing_shard_is_named(tmp_path, sharded):
    folder = reshard_weights(sharded, tmp_path / "w", max_file_bytes=LIMIT)
    n = _shards(folder)
    (folder / f"swap-00002-of-{n:05d}.safetensors").unlink()
    with pytest.raises(CheckpointError, match=rf"weights file missing: .*swap-00002-of-{n:05d}\.safetensors "
                                              rf"\(shard 2 of {n} of swap\.safetensors\)"):
        load_weights(folder)


def test_damaged_shard_is_named(tmp_path, sharded):
    folder = reshard_weights(sharded, tmp_path / "w", max_file_bytes=LIMIT)
    n = _shards(folder)
    path = folder / f"swap-00003-of-{n:05d}.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"swap-00003-of-{n:05d}\.safetensors \(shard 3 of {n} of "
                                              r"swap\.safetensors\) is corrupt: sha256"):
        load_weights(folder)


def test_shard_names_outside_the_folder_are_refused(tmp_path, sharded):
    folder = reshard_weights(sharded, tmp_path / "w", max_file_bytes=LIMIT)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["swap.safetensors"]["shards"][0]["file"] = "../elsewhere.safetensors"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="is damaged"):
        load_weights(folder)


def test_a_tensor_larger_than_the_limit_is_refused(tmp_path, models):
    with pytest.raises(CheckpointError, match="alone takes .* store the weights as int8 or fp16"):
        save_weights(models, tmp_path / "w", storage="fp32", max_file_bytes=1 << 20)


def test_store_imports_a_sharded_folder(tmp_path, monkeypatch, sharded):
    from mfs_fast.store import import_weights

    monkeypatch.setenv("MFS_FAST_HOME", str(tmp_path / "home"))
    stored = import_weights(sharded, "gpu-run")
    assert sorted(p.name for p in stored.iterdir()) == sorted(p.name for p in sharded.iterdir())
    _same(load_weights(sharded), load_weights(stored))


def test_paste_detail_travels_in_the_manifest(tmp_path, models):
    """Weights trained for the detail-keeping paste say so; the Swapper takes it as its default."""
    import dataclasses

    plain = save_weights(models, tmp_path / "plain")
    assert "paste_detail" not in json.loads((plain / MANIFEST).read_text())
    assert load_weights(plain).paste_detail == 0.0
    folder = save_weights(dataclasses.replace(models, paste_detail=1.5), tmp_path / "detail")
    assert load_weights(folder).paste_detail == 1.5
    manifest = json.loads((folder / MANIFEST).read_text())
    for bad in ["1.5", -1, 99, True, None]:
        (folder / MANIFEST).write_text(json.dumps({**manifest, "paste_detail": bad}))
        with pytest.raises(CheckpointError, match="paste_detail"):
            load_weights(folder)



def test_paste_colour_shares_travel_in_the_manifest(tmp_path, models):
    """Weights trained for the colour-limited paste (paste_chroma / paste_brightness) say so; 1
    (the official paste) is not written; damaged values are refused by name."""
    import dataclasses

    plain = save_weights(models, tmp_path / "plain")
    assert not {"paste_chroma", "paste_brightness"} & set(json.loads((plain / MANIFEST).read_text()))
    assert (load_weights(plain).paste_chroma, load_weights(plain).paste_brightness) == (1.0, 1.0)
    folder = save_weights(dataclasses.replace(models, paste_chroma=0.0, paste_brightness=0.5), tmp_path / "colour")
    loaded = load_weights(folder)
    assert (loaded.paste_chroma, loaded.paste_brightness) == (0.0, 0.5)
    manifest = json.loads((folder / MANIFEST).read_text())
    for key in ("paste_chroma", "paste_brightness"):
        for bad in ["0", -0.5, 1.5, False, None]:
            (folder / MANIFEST).write_text(json.dumps({**manifest, key: bad}))
            with pytest.raises(CheckpointError, match=key):
                load_weights(folder)


def test_paste_eyes_travels_in_the_manifest(tmp_path, models):
    """Weights meant to be pasted with the target's eyes say so; "swap" (the official paste) is
    not written; a damaged value is refused by name."""
    import dataclasses

    plain = save_weights(models, tmp_path / "plain")
    assert "paste_eyes" not in json.loads((plain / MANIFEST).read_text())
    assert load_weights(plain).paste_eyes == "swap"
    folder = save_weights(dataclasses.replace(models, paste_eyes="target"), tmp_path / "eyes")
    assert load_weights(folder).paste_eyes == "target"
    manifest = json.loads((folder / MANIFEST).read_text())
    for bad in ["source", 1, None, True]:
        (folder / MANIFEST).write_text(json.dumps({**manifest, "paste_eyes": bad}))
        with pytest.raises(CheckpointError, match="paste_eyes"):
            load_weights(folder)
