"""The head's model: standardisation fitted on the training features, then one Dense layer (sigmoid or
softmax output); float32, saved as one .npz per repeat. Fit by stages.lib.train.head; the same model as
fine-tuning's Keras head (stages.lib.train.finetune.model.build_head)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.lib.losses import probabilities

# Keras' default: Normalization's floor on the standard deviation.
STD_FLOOR = 1e-7


def standardisation(train_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training features' mean and standard deviation (floored at STD_FLOOR), float64: (D,), (D,)."""
    features = np.asarray(train_features, dtype=np.float64)
    return features.mean(axis=0), np.maximum(features.std(axis=0), STD_FLOOR)


@dataclass
class LinearHead:
    """Standardisation (fitted on the training features) + Dense; float32 throughout."""

    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)
    kernel: np.ndarray  # (D, units)
    bias: np.ndarray  # (units,)
    task: str

    def standardise(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, dtype=np.float32) - self.mean) / self.std

    def logits(self, standardised: np.ndarray) -> np.ndarray:
        """The output unit(s) the loss sees, before the sigmoid / softmax: (N, 1) or (N, K), float32."""
        return (standardised @ self.kernel + self.bias).astype(np.float32)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """P(positive) as (N,) for binary, class probabilities (N, K) for multiclass; float64 (of float32)."""
        out = probabilities(self.logits(self.standardise(features)), self.task).astype(np.float64)
        return out[:, 0] if self.task == "binary" else out

    def save(self, path: Path) -> None:
        """One .npz file; `path` is written as given (no suffix appended)."""
        with open(path, "wb") as handle:
            np.savez(handle, mean=self.mean, std=self.std, kernel=self.kernel, bias=self.bias, task=self.task)

    @classmethod
    def load(cls, path: Path) -> LinearHead:
        with np.load(path) as saved:
            return cls(
                mean=saved["mean"],
                std=saved["std"],
                kernel=saved["kernel"],
                bias=saved["bias"],
                task=str(saved["task"]),
            )
