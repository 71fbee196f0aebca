"""The noisy label file's contents: per repeat seed, one seeded draw of the training pool's and the validation
set's labels (or the labels a CSV gives, the same for every seed), and the realised-noise summary of them.

Each repeat has its own generator (`repeat_rng`, `val_rng`), so a repeat's draw does not depend on which other
repeats run, and the training pool's draw is the same with or without a validation set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stages.lib.core.errors import UserError
from stages.lib.core.params import NoiseParams
from stages.lib.noise.models import corrupt_labels, expected_flips, flip_rates
from stages.lib.noise.transition import transition_matrix


def repeat_rng(seed: int, repeat: int) -> np.random.Generator:
    """The generator for one repeat: both the global seed and the repeat seed change the draw."""
    return np.random.default_rng([seed, repeat])


def class_rates_by_index(class_rates: dict[str, float] | None, names: list[str]) -> dict[int, float] | None:
    if class_rates is None:
        return None
    unknown = [name for name in class_rates if name not in names]
    if unknown:
        raise UserError(f"noise_class_rates: unknown class {unknown[0]!r}; allowed: {', '.join(names)}")
    return {names.index(name): rate for name, rate in class_rates.items()}


def val_rng(seed: int, repeat: int) -> np.random.Generator:
    """The validation set's generator for one repeat: its own stream, so the training pool's draw is the same
    whether or not there is a validation set."""
    return np.random.default_rng([seed, repeat, 1])


def _noisy_block(
    part: pd.DataFrame,
    split: str,
    noise: NoiseParams,
    num_classes: int,
    rates,
    repeat: int,
    rng,
    given: np.ndarray | None = None,
) -> pd.DataFrame:
    labels = part["label"].to_numpy()
    if given is not None:
        noisy = np.asarray(given, dtype=labels.dtype)
    elif len(labels):
        noisy = corrupt_labels(labels, num_classes, noise.rate, noise.kind, rng, class_rates=rates)
    else:
        noisy = labels
    return pd.DataFrame(
        {
            "seed": repeat,
            "id": part["id"].to_numpy(),
            "clean_label": labels,
            "label": noisy,
            "flipped": noisy != labels,
            "split": split,
        }
    )


def class_flips(
    block: pd.DataFrame, noise: NoiseParams, names: list[str], rates: dict[int, float] | None
) -> dict[str, dict[str, int | None]]:
    """Per class of one split's block: its size `n`, the labels `flipped`, and the count the noise model
    fixes, `expected` (round(rate x n), half up; None for the notebook's rule and given noise, which fix none)."""
    clean, noisy = block["clean_label"].to_numpy(dtype=np.int64), block["label"].to_numpy(dtype=np.int64)
    flipped = flip_rates(clean, noisy, len(names))["per_class_count"]
    sizes = np.bincount(clean, minlength=len(names))
    expected = expected_flips(clean, len(names), noise.rate, noise.kind, rates)
    return {
        name: {"n": int(sizes[i]), "flipped": flipped[i], "expected": None if expected is None else expected[i]}
        for i, name in enumerate(names)
    }


def per_class_exact(per_seed: dict[str, dict]) -> bool | None:
    """Whether every seed's every split and class flipped exactly the count its noise model fixes (None when
    the model fixes none: the notebook's rule, given)."""
    cells = [
        cell for seed in per_seed.values() for split in seed["per_class_flips"].values() for cell in split.values()
    ]
    if not cells or any(cell["expected"] is None for cell in cells):
        return None
    return all(cell["flipped"] == cell["expected"] for cell in cells)


def corrupt_pool(
    clean: pd.DataFrame,
    noise: NoiseParams,
    names: list[str],
    seed: int,
    repeats: tuple[int, ...],
    val: pd.DataFrame | None = None,
    given: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Noisy labels for every repeat seed (long format: per seed, the training rows then the validation
    rows) and the realised-noise summary of the training pool (and the validation set's flip rate).

    The validation labels (`val`, id and label, may be empty) are corrupted by the same noise model at the
    same rate, with their own exact count: what a practitioner holds out is as noisy as what they train on.
    `given` (noise_type given): the training and validation labels someone gave, the same for every seed.
    The summary (metrics/noise.json): the training pool's realised flip rates, overall and per class, its
    realised transition matrix, the validation set's realised flip rate, and per seed, split and class the
    class size, the flips and the count the noise model fixes.
    """
    num_classes = len(names)
    rates = class_rates_by_index(noise.class_rates, names)
    val = clean.iloc[:0] if val is None else val
    train_given, val_given = given if given is not None else (None, None)
    frames, per_seed = [], {}
    for repeat in repeats:
        train_block = _noisy_block(
            clean, "train", noise, num_classes, rates, repeat, repeat_rng(seed, repeat), train_given
        )
        val_block = _noisy_block(val, "val", noise, num_classes, rates, repeat, val_rng(seed, repeat), val_given)
        frames += [train_block, val_block]
        labels, noisy = train_block["clean_label"].to_numpy(), train_block["label"].to_numpy()
        realised = flip_rates(labels, noisy, num_classes)
        per_seed[str(repeat)] = {
            "flip_rate": realised["overall"],
            "flipped": realised["count"],
            "per_class": {names[int(k)]: v for k, v in realised["per_class"].items()},
            "transition_matrix": np.round(transition_matrix(labels, noisy, num_classes), 6).tolist(),
            "val_flipped": int(val_block["flipped"].sum()),
            "val_flip_rate": float(val_block["flipped"].mean()) if len(val_block) else None,
            "per_class_flips": {
                split: class_flips(block, noise, names, rates)
                for split, block in (("train", train_block), ("val", val_block))
                if len(block)
            },
        }
    summary = {
        "noise": noise.rate,
        "noise_type": noise.kind,
        **({"noise_labels": noise.labels_file} if noise.kind == "given" else {}),
        "train_size": len(clean),
        "flip_rate": float(np.mean([s["flip_rate"] for s in per_seed.values()])),
        "per_class": {name: float(np.nanmean([s["per_class"][name] for s in per_seed.values()])) for name in names},
        "label_names": names,
        "val_size": len(val),
        "val_flip_rate": float(np.mean([s["val_flip_rate"] for s in per_seed.values()])) if len(val) else None,
        "per_class_exact": per_class_exact(per_seed),
        "seeds": per_seed,
    }
    return pd.concat(frames, ignore_index=True), summary
