"""Confident learning on the clean labels (stages.lib.noise.detection), per train seed: no label is flipped, so
every flag is a false one, and the estimated noise matrix is what the detector reads into clean labels.

It is its own stage because none of it depends on the noise: a noise level's `dvc exp run` reruns detect on
the noisy labels only, and these cross-validations, as many as detect's, run once per split and seeds. The
detect stage reads its file: the false-flag rates go into metrics/details/detection.json, the estimated T into
forward-clean's transitions with `T: estimated`.
"""

from __future__ import annotations

import sys

from stages.lib.core.errors import run_stage
from stages.lib.core.io import write_json
from stages.lib.core.params import read_params
from stages.lib.core.seeds import derived_seed
from stages.lib.core.variants import label_file
from stages.lib.noise.detection import CLEAN_DETECTION_FILE, detect_issues, detection_problem, training_pool


def main() -> None:
    params = read_params()
    seed, folds, strengths = params.seed, params.detect.folds, params.detect.l2
    pool = training_pool(params.task)
    problem = detection_problem(pool, fine_tune=params.model.fine_tune, folds=folds)
    if problem is not None:
        print(f"detect_clean: {problem}: nothing detected", file=sys.stderr)
        write_json(CLEAN_DETECTION_FILE, {"skipped": problem})
        return
    seeds = {}
    for repeat in params.train.seeds:
        _, issues = detect_issues(
            pool.features,
            pool.true_labels,
            num_classes=len(pool.names),
            folds=folds,
            l2=strengths,
            seed=derived_seed(seed, repeat),
            source=str(label_file("clean")),
        )
        seeds[str(repeat)] = {
            "false_flag_rate": float(issues.flagged.mean()),
            "flagged": int(issues.flagged.sum()),
            "estimated_noise_rate": issues.estimated_noise_rate,
            "transition": issues.transition.tolist(),  # full precision: detect writes it on unchanged
        }
    write_json(CLEAN_DETECTION_FILE, {"seeds": seeds})


if __name__ == "__main__":
    run_stage("detect_clean", main)
