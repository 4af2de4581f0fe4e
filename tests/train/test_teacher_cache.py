"""The teacher's swap cache: a cached swap with the target's augmentation replayed is the swap the
teacher makes on the augmented pair; it survives a restart (and an interrupted save); the
sampler's partner pool makes every distilled pair a pooled one."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from conftest import _astronaut_bgr, astronaut_two_poses_cache
from mfs_fast.train.data import FaceCache, PairGroup, PairSampler, build_cache
from mfs_fast.train.prefetch import LiveTeacher, distilled_rows
from mfs_fast.train.teacher import create_teacher
from mfs_fast.train.teacher_cache import INDEX, SWAPS, CachedTeacher


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> FaceCache:
    return astronaut_two_poses_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def teacher(cache):
    return create_teacher({"kind": "mesh-warp"}, cache.mean_points())


def _group(cache: FaceCache) -> PairGroup:
    """Source 0 onto target 1, both augmented, as the sampler would draw them."""
    source, target = cache.sample(0), cache.sample(1)
    return PairGroup(source.image, target.image[None], target.face_mask[None], torch.tensor([False]),
                      torch.tensor([True]), source.points, target.points[None], (0, 1), (target.augmentation,))


def test_cached_swap_is_the_live_swap_of_the_augmented_pair(cache, teacher, tmp_path):
    """Over the target's face, the replayed cached swap is within a few 8-bit levels of the swap
    the teacher makes on the augmented crops (one more bilinear resampling, JPEG, the source's
    jitter: mean 0.007-0.021 over 25 random cache seeds); replaying the wrong augmentation (no
    flip where there was one, or the reverse) is far off (0.074-0.15)."""
    cached = CachedTeacher(teacher, cache, tmp_path / "swaps")
    for _ in range(4):  # four augmentations of the same pair
        group = _group(cache)
        rows = torch.tensor([0])
        live = LiveTeacher(teacher).swaps(group, rows)[0]
        replayed = cached.swaps(group, rows)[0]
        face = group.target_masks[0, 0] > 0.5
        error = (replayed - live).abs().amax(0)[face]
        assert float(error.mean()) < 0.035, float(error.mean())
        augmentation = group.target_augmentations[0]
        augmentation.flip = not augmentation.flip
        wrong = cached.swaps(group, rows)[0]
        assert float((wrong - live).abs().amax(0)[face].mean()) > 0.06
    assert cached.misses == 1 and cached.hits == 7  # one pair, swapped once


def test_cache_survives_a_restart_and_an_interrupted_save(cache, teacher, tmp_path):
    folder = tmp_path / "swaps"
    first = CachedTeacher(teacher, cache, folder)
    group = _group(cache)
    rows = torch.tensor([0])
    made = first.swaps(group, rows)
    first.save()
    # an interrupted later save: bytes appended, index never rewritten -> ignored, nothing lost
    with (folder / SWAPS).open("ab") as file:
        file.write(b"\xff" * 100)
    index = json.loads((folder / INDEX).read_text())
    index["swaps"]["1,0"] = [10**9, 100]  # an entry naming bytes that were never written
    (folder / INDEX).write_text(json.dumps(index))
    second = CachedTeacher(teacher, cache, folder)
    assert set(second.stored) == {(0, 1)}
    assert torch.equal(second.swaps(group, rows), made)
    assert second.misses == 0 and second.hits == 1
    second.save()  # nothing new: the files stay as they are
    assert json.loads((folder / INDEX).read_text()) == index


def test_distilled_pairs_come_from_each_sources_partner_pool(tmp_path):
    """With partners, every distilled (sharp cross) pair is (source, one of its partners);
    the pool depends on the seed only, not on the draw order."""
    folder = tmp_path / "photos"
    folder.mkdir()
    image = _astronaut_bgr()
    for k in range(6):  # six people: the same face at six scales and shifts
        crop = image[10 * k:480 - 5 * k, 15 * k:470 - 10 * k]
        cv2.imwrite(str(folder / f"p{k}.jpg"), cv2.flip(crop, 1) if k % 2 else crop)
    cache = FaceCache(build_cache([str(folder)], tmp_path / "cache"))
    assert len(cache) == 6 and cache.sharp.all()
    sampler = PairSampler(cache, 2, 0.0, 0.0, seed=3, sharp_target_share=1.0, partners=2)
    pools = {i: set(sampler.partners_of(i).tolist()) for i in range(6)}
    assert all(len(pool) == 2 for pool in pools.values())
    assert pools == {i: set(PairSampler(cache, 2, 0.0, 0.0, seed=3, partners=2).partners_of(i).tolist()) for i in range(6)}
    seen = set()
    for _ in range(40):
        group = sampler.group()
        for row in distilled_rows(group).tolist():
            source, target = group.indices[0], group.indices[1 + row]
            assert target in pools[source]
            seen.add((source, target))
    assert len(seen) >= 6  # the pool is drawn from, not one pair


def test_the_pool_is_filled_once_and_steps_then_only_read_it(tmp_path):
    """fill() swaps every pooled pair once (a second fill, or a restart, makes none), and every
    distilled pair a step draws is then a hit: no step pays for the teacher."""
    folder = tmp_path / "photos"
    folder.mkdir()
    image = _astronaut_bgr()
    for k in range(4):
        crop = image[10 * k:480 - 5 * k, 15 * k:470 - 10 * k]
        cv2.imwrite(str(folder / f"p{k}.jpg"), cv2.flip(crop, 1) if k % 2 else crop)
    cv2.imwrite(str(folder / "p0_again.jpg"), image[5:470, 5:470])  # p0's second photo: a same-person partner
    cache = FaceCache(build_cache([str(folder)], tmp_path / "cache"))
    sampler = PairSampler(cache, 2, 0.0, 0.0, seed=1, sharp_target_share=1.0, partners=3)
    pool = sampler.distilled_pool()
    identity = [entry["identity"] for entry in cache.entries]
    assert pool and all(identity[s] != identity[t] for s, t in pool)
    assert set(pool) == {(s, int(t)) for s in range(len(cache)) for t in sampler.partners_of(s) if identity[s] != identity[t]}
    teacher = create_teacher({"kind": "mesh-warp"}, cache.mean_points())
    cached = CachedTeacher(teacher, cache, tmp_path / "swaps")
    assert cached.fill(pool, progress=False) == len(pool)
    assert cached.fill(pool, progress=False) == 0
    assert CachedTeacher(teacher, cache, tmp_path / "swaps").fill(pool, progress=False) == 0  # saved
    drawn = 0
    for _ in range(30):
        group = sampler.group()
        rows = distilled_rows(group)
        if len(rows):
            cached.swaps(group, rows)
            drawn += len(rows)
    assert drawn > 0 and cached.misses == 0 and cached.hits == drawn
    assert PairSampler(cache, 2, 0.0, 0.0, seed=1).distilled_pool() == []  # no partners, no pool
