"""Which trainer trains a variant: heads on the cached features, or, with model.fine_tune, ResNet50 on the
images (docs/fine-tuning.md says when each runs)."""

from __future__ import annotations

from stages.lib.core.params import ModelParams
from stages.lib.train.head_trainer import HeadTrainer
from stages.lib.train.interface import Trainer


def trainer_class(model: ModelParams) -> type[Trainer]:
    if model.fine_tune:  # Keras and its backend load only here
        from stages.lib.train.finetune.trainer import FineTuneTrainer

        return FineTuneTrainer
    return HeadTrainer
