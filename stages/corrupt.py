"""The noisy training and validation labels, one seeded draw per repeat seed (stages.lib.noise.corruption), or with
noise_type given the labels a CSV gives (stages.lib.noise.given_labels); the test labels are never touched.
"""

from __future__ import annotations

import sys

import pandas as pd

from stages.lib.core.errors import run_stage
from stages.lib.core.headline import noise_headline
from stages.lib.core.io import NOISE_METRICS, details_of, label_names, read_prepared, write_csv, write_json
from stages.lib.core.params import read_params
from stages.lib.core.variants import label_file
from stages.lib.noise.corruption import corrupt_pool
from stages.lib.noise.given_labels import read_given_labels


def main() -> None:
    params = read_params()
    noise, seed, repeats = params.noise, params.seed, params.train.seeds
    table, summary = read_prepared()
    names = label_names(summary)
    clean = table.loc[table["split"] == "train", ["id", "file", "label"]].reset_index(drop=True)
    val = table.loc[table["split"] == "val", ["id", "file", "label"]].reset_index(drop=True)
    given = None
    if noise.kind == "given":
        # One read of the CSV for the training and validation images, in that order.
        both = read_given_labels(noise.labels_file, pd.concat([clean, val], ignore_index=True), summary)
        given = (both[: len(clean)], both[len(clean) :])
    noisy, noise_summary = corrupt_pool(clean, noise, names, seed, repeats, val, given)
    write_csv(label_file("noisy"), noisy)
    write_json(details_of(NOISE_METRICS), noise_summary)
    write_json(NOISE_METRICS, noise_headline(noise_summary))
    print(
        f"corrupt: noise={noise.rate} ({noise.kind}) flipped {noise_summary['flip_rate']:.4f} of {len(clean)} "
        f"training labels on average over seeds {list(repeats)}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    run_stage("corrupt", main)
