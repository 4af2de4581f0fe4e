"""Shared fixtures: a random official-layout checkpoint (fresh each run) and aligned crops."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import official_reference as ref  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# exported ONNX graphs etc. go to a throw-away cache, not the user's ~/.cache (subprocesses inherit it)
os.environ.setdefault("MFS_FAST_CACHE", tempfile.mkdtemp(prefix="mfs-fast-test-cache-"))
SHARED_ASSETS = ROOT.parent / "shared" / "assets"


def pytest_report_header(config):
    return f"mfs_fast test seed: {SEED} (set MFS_TEST_SEED to repeat a run)"


SEED = int(os.environ.get("MFS_TEST_SEED", int.from_bytes(os.urandom(4), "little")))


@pytest.fixture(scope="session")
def seed() -> int:
    return SEED


@pytest.fixture(scope="session")
def official_state(seed, aligned_pair):
    """(swap, arcface) random parameter dicts in the official Paddle layout, with statistics
    calibrated like a trained model's (see official_reference)."""
    rng = np.random.default_rng(seed)
    arcface = ref.calibrate_arcface(ref.random_state(ref.arcface_layout(), rng, centred_means=True), rng)
    source, target, _, _ = aligned_pair
    swap = ref.centre_mask_logits(ref.random_state(ref.swap_layout(), rng), arcface, source, target)
    return swap, arcface


@pytest.fixture(scope="session")
def official_dir(tmp_path_factory, official_state) -> Path:
    """A folder holding MobileFaceSwap_224.pdparams and arcface.pdparams, written with plain pickle."""
    folder = tmp_path_factory.mktemp("official")
    swap, arcface = official_state
    ref.write_official_pdparams(swap, folder / "MobileFaceSwap_224.pdparams")
    ref.write_official_pdparams(arcface, folder / "arcface.pdparams", protocol=2)  # older Paddle wrote v2
    return folder


def _astronaut_bgr() -> np.ndarray:
    import skimage.data

    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def astronaut_two_poses_cache(tmp_path_factory) -> "FaceCache":
    """A training crop cache of two photos (two people to the sampler): the astronaut and a
    mirrored, shifted, rescaled copy of her (another pose), with a random augmentation seed."""
    from mfs_fast.train.data import FaceCache, build_cache

    folder = tmp_path_factory.mktemp("photos")
    image = _astronaut_bgr()
    cv2.imwrite(str(folder / "a.jpg"), image)
    cv2.imwrite(str(folder / "b.jpg"), cv2.resize(cv2.flip(image, 1)[30:480, 40:470], (400, 420)))
    return FaceCache(build_cache([str(folder)], tmp_path_factory.mktemp("cache")),
                     seed=int(np.random.default_rng().integers(1 << 30)))


@pytest.fixture(scope="session")
def aligned_pair(tmp_path_factory):
    """(source, target) 224x224 BGR crops from skimage's astronaut photo, and their PNG paths."""
    image = _astronaut_bgr()
    source = cv2.resize(image[20:240, 140:360], (224, 224), interpolation=cv2.INTER_AREA)
    target = cv2.resize(cv2.flip(image[0:300, 90:390], 1), (224, 224), interpolation=cv2.INTER_AREA)
    folder = tmp_path_factory.mktemp("crops")
    cv2.imwrite(str(folder / "source.png"), source)
    cv2.imwrite(str(folder / "target.png"), target)
    return source, target, folder / "source.png", folder / "target.png"


@pytest.fixture(scope="session")
def official_models(official_dir):
    """Our reference models loaded from the official-layout files."""
    from mfs_fast.checkpoints import load_weights

    return load_weights(official_dir)


@pytest.fixture(scope="session")
def official_reference(official_state, aligned_pair) -> dict:
    """What the official image_test.py (merge_result=False) computes for the aligned pair."""
    swap, arcface = official_state
    source, target, _, _ = aligned_pair
    return ref.official_image_test(swap, arcface, source, target)


def without_root_powers() -> tuple[str, ...]:
    """A command prefix under which file permissions apply (root ignores them)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made to refuse writes")
    return (setpriv, "--inh-caps=-all", "--bounding-set=-all", "--")
