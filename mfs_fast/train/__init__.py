"""Training: the paper's distillation framework, runnable without a teacher.

    config = mfs_fast.train.load_config("train.toml")
    weights_folder = mfs_fast.train.train(config)

See :mod:`.losses` for what is optimised and :mod:`.teacher` for the teachers it can learn from.
"""

from .config import TrainConfig, load_config
from .trainer import StudentTrainer, train

__all__ = ["StudentTrainer", "TrainConfig", "load_config", "train"]
