"""Where the next step's inputs are prepared: in a thread only where it has a core of its own."""

from __future__ import annotations

import pytest
import torch

from mfs_fast.errors import MfsError
from mfs_fast.train.config import TrainConfig
from mfs_fast.train.prefetch import prefetch_in_thread


def test_auto_uses_a_thread_only_with_a_spare_core():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not prefetch_in_thread("auto", cpu, cores=2, torch_threads=2)  # the 2-core dev VM: serial
    assert prefetch_in_thread("auto", cpu, cores=16, torch_threads=2)
    assert not prefetch_in_thread("auto", cpu, cores=16, torch_threads=16)
    assert prefetch_in_thread("auto", cuda, cores=2, torch_threads=2)  # the step runs on the GPU
    assert prefetch_in_thread("thread", cpu, cores=2, torch_threads=2)
    assert not prefetch_in_thread("off", cuda)


def test_config_rejects_an_unknown_setting(tmp_path):
    with pytest.raises(MfsError, match="prefetch must be one of auto, thread, off"):
        TrainConfig(data=[str(tmp_path)], prefetch="yes").check()
