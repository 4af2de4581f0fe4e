"""The local model store: names for weights sets, import of user folders, list, remove."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import without_root_powers
from mfs_fast import cli
from mfs_fast.checkpoints import load_weights
from mfs_fast.errors import CheckpointError, MfsError
from mfs_fast.store import import_weights, list_weights, models_dir, remove_weights, resolve_weights
from mfs_fast.weights import STARTER_DIR


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("MFS_FAST_HOME", str(folder))
    return folder


def entries(home: Path) -> list[str]:
    models = home / "models"
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


def test_home_follows_xdg_cache_without_override(monkeypatch, tmp_path):
    monkeypatch.delenv("MFS_FAST_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert models_dir() == tmp_path / "mfs_fast" / "models"


def test_starter_is_a_name(home):
    assert resolve_weights("starter") == STARTER_DIR
    assert [row.name for row in list_weights()] == ["starter"]
    with pytest.raises(MfsError, match="bundled"):
        remove_weights("starter")


def test_unknown_name_says_what_to_do(home):
    with pytest.raises(CheckpointError, match="`mfs-fast weights get official`"):
        load_weights("official")
    with pytest.raises(CheckpointError, match="`mfs-fast weights list`"):
        resolve_weights("mine")


def test_paths_and_existing_folders_win_over_names(home, tmp_path, monkeypatch):
    assert resolve_weights("./official") == Path("./official")
    assert resolve_weights(tmp_path) == tmp_path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    assert resolve_weights("mine") == Path("mine")


def test_import_keeps_the_storage_and_records_provenance(home, tmp_path, capsys):
    run = tmp_path / "run"  # a `mfs-fast train` output folder: weights/ inside
    shutil.copytree(STARTER_DIR, run / "weights")
    assert cli.main(["weights", "import", str(run), "--name", "mine", "--licence", "CC0-1.0"]) == 0
    assert "--weights mine" in capsys.readouterr().out
    stored = models_dir() / "mine"
    assert resolve_weights("mine") == stored
    for name in ("swap.safetensors", "identity.safetensors"):  # copied as they were (int8 kept)
        assert (stored / name).read_bytes() == (STARTER_DIR / name).read_bytes()
    provenance = json.loads((stored / "manifest.json").read_text())["provenance"]
    assert provenance["licence"] == "CC0-1.0" and provenance["source"] == f"imported from {(run / 'weights').resolve()}"
    bundled = json.loads((STARTER_DIR / "manifest.json").read_text())["provenance"]
    assert provenance["total_steps"] == bundled["total_steps"] > 0  # the training lineage is kept
    mine, starter = load_weights("mine"), load_weights("starter")
    assert all(torch.equal(a, b) for a, b in zip(mine.idn.state_dict().values(), starter.idn.state_dict().values()))

    assert cli.main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "mine" in out and "CC0-1.0" in out and "imported from" in out

    with pytest.raises(MfsError, match="already in the model store"):
        import_weights(run, "mine")
    import_weights(run, "mine", replace=True)
    assert entries(home) == ["mine"]

    assert cli.main(["weights", "remove", "mine"]) == 0
    assert entries(home) == []
    assert cli.main(["weights", "remove", "mine"]) == 2


def test_corrupt_folder_is_refused_and_nothing_is_stored(home, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(STARTER_DIR, broken)
    data = bytearray((broken / "identity.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (broken / "identity.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is corrupt: sha256"):
        import_weights(broken, "broken")
    assert entries(home) == []


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "x" * 65, "starter"])
def test_bad_names_are_refused(home, name):
    with pytest.raises(MfsError):
        import_weights(STARTER_DIR, name)
    assert entries(home) == []


def test_damaged_stored_set_is_listed_not_fatal(home):
    (models_dir() / "odd").mkdir(parents=True)
    (models_dir() / "odd" / "manifest.json").write_text("{not json")
    (models_dir() / ".incoming-abc").mkdir()  # a staging folder is never listed
    rows = {row.name: row for row in list_weights()}
    assert set(rows) == {"starter", "odd"} and rows["odd"].source.startswith("damaged")


def test_read_only_store_is_one_clear_error(home):
    home.mkdir()
    home.chmod(0o500)
    try:
        done = subprocess.run([*without_root_powers(), sys.executable, "-m", "mfs_fast", "weights", "import",
                               str(STARTER_DIR), "--name", "mine"], capture_output=True, text=True, timeout=120)
    finally:
        home.chmod(0o700)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "cannot write to the model store" in done.stderr and entries(home) == []
