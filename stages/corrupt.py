"""Stage 3: the noisy training labels, one seeded draw per repeat seed (or, with noise_type given, the labels
a CSV gives: stages.lib.given_labels).

Writes data/labels/noisy.csv (seed, id, clean_label, label, flipped) and metrics/noise.json with the
realised flip rates, overall and per class, and the realised transition matrix. Test labels are never
touched: only the training pool is read.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from stages.lib import params as P
from stages.lib.errors import UserError, run_stage
from stages.lib.given_labels import read_given_labels
from stages.lib.io import label_names, read_prepared, write_csv, write_json
from stages.lib.labels import label_file
from stages.lib.noise import corrupt_labels, flip_rates, transition_matrix

NOISE_METRICS = "metrics/noise.json"


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


def corrupt_pool(
    clean: pd.DataFrame,
    noise: P.NoiseParams,
    names: list[str],
    seed: int,
    repeats: tuple[int, ...],
    given: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Noisy labels for every repeat seed (long format) and the realised-noise summary.

    `given` (noise_type given): the labels someone gave, the same for every seed (nothing is drawn)."""
    num_classes = len(names)
    rates = class_rates_by_index(noise.class_rates, names)
    frames, per_seed = [], {}
    for repeat in repeats:
        labels = clean["label"].to_numpy()
        if given is not None:
            noisy = np.asarray(given, dtype=labels.dtype)
        else:
            rng = repeat_rng(seed, repeat)
            noisy = corrupt_labels(labels, num_classes, noise.rate, noise.kind, rng, class_rates=rates)
        frames.append(
            pd.DataFrame(
                {
                    "seed": repeat,
                    "id": clean["id"].to_numpy(),
                    "clean_label": labels,
                    "label": noisy,
                    "flipped": noisy != labels,
                }
            )
        )
        realised = flip_rates(labels, noisy, num_classes)
        per_seed[str(repeat)] = {
            "flip_rate": realised["overall"],
            "flipped": realised["count"],
            "per_class": {names[int(k)]: v for k, v in realised["per_class"].items()},
            "transition_matrix": np.round(transition_matrix(labels, noisy, num_classes), 6).tolist(),
        }
    summary = {
        "noise": noise.rate,
        "noise_type": noise.kind,
        **({"noise_labels": noise.labels_file} if noise.kind == "given" else {}),
        "train_size": len(clean),
        "flip_rate": float(np.mean([s["flip_rate"] for s in per_seed.values()])),
        "per_class": {name: float(np.nanmean([s["per_class"][name] for s in per_seed.values()])) for name in names},
        "label_names": names,
        "seeds": per_seed,
    }
    return pd.concat(frames, ignore_index=True), summary


def main() -> None:
    raw = P.load_checked_params()
    noise = P.noise_params(raw)
    seed = P.seed(raw)
    repeats = P.train_seeds(raw)
    table, report = read_prepared()
    names = label_names(report)
    clean = table.loc[table["split"] == "train", ["id", "file", "label"]].reset_index(drop=True)
    given = read_given_labels(noise.labels_file, clean, report) if noise.kind == "given" else None
    noisy, summary = corrupt_pool(clean, noise, names, seed, repeats, given)
    write_csv(label_file("noisy"), noisy)
    write_json(NOISE_METRICS, summary)
    print(
        f"corrupt: noise={noise.rate} ({noise.kind}) flipped {summary['flip_rate']:.4f} of {len(clean)} "
        f"training labels on average over seeds {list(repeats)}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    run_stage("corrupt", main)
