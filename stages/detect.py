"""Confident learning on the training pool (stages.lib.noise.detection): find the flipped labels, prune them,
estimate the noise.

Per train seed, K-fold cross-validation (`detect.folds`) of an L2 logistic regression (its strength chosen
from `detect.l2` by out-of-fold log-loss on the same labels) on that seed's noisy labels gives
out-of-sample probabilities; cleanlab flags the label issues (prune by noise rate) and ranks every label
(score = 1 - self-confidence: higher is more suspect). The same run on the clean labels, where every flag
is a false one, is the detect_clean stage's (it does not depend on the noise); its file is read here.
Beside the flags and the pruned label set, each variant of the train matrix gets its own transitions file
(dvc.yaml says why): the estimated matrix per seed for forward variants with `T: estimated`, the noisy
labels' for noisy and pruned variants with `train.select_score: corrected_estimated`, null otherwise. The
metrics (metrics/details/detection.json; the headline in metrics/detection.json) compare the flags with the
flipped labels, against the small-loss baseline (the same out-of-sample probabilities' cross-entropy on the
given label, flagging as many), and the estimated noise with the realised one.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

from stages.lib.core.errors import UserError, run_stage
from stages.lib.core.headline import detection_headline
from stages.lib.core.io import DETECTION_METRICS, atomic_dir, details_of, read_csv, write_csv, write_json
from stages.lib.core.params import LABEL_SETS
from stages.lib.core.seeds import derived_seed
from stages.lib.core.variants import ISSUES_FILE, label_file, labels_for_seed, variant_name
from stages.lib.losses.settings import LOSS_NAMES, read_params_with_losses, validate_loss_params
from stages.lib.noise.detection import (
    CLEAN_KEYS,
    Issues,
    OutOfSample,
    clean_run,
    detect_issues,
    detection_problem,
    detection_summary,
    issues_table,
    pruned_rows,
    seed_metrics,
    training_pool,
)
from stages.lib.noise.transition import (
    SELECT_SCORE_TRANSITIONS,
    TRANSITIONS_DIR,
    estimated_transition,
    transition_file,
    variant_transitions,
)


def main() -> None:
    params = read_params_with_losses()
    settings, task, seed = params.train, params.task, params.seed
    folds, strengths = params.detect.folds, params.detect.l2
    # train.select_score: corrected_estimated corrects each noisy or pruned variant's selection score with
    # the estimated T of the noisy labels (the validation labels are drawn like the training pool's).
    validation_needed = SELECT_SCORE_TRANSITIONS[settings.select_score] == "estimated"
    pool = training_pool(task)
    train_ids, true_labels, features, num_classes = pool.ids, pool.true_labels, pool.features, len(pool.names)
    noisy_table = read_csv(label_file("noisy"))
    forward_params = validate_loss_params("forward", params.written_loss_params.get("forward"))
    estimated_needed = forward_params["T"] == "estimated"
    problem = detection_problem(pool, fine_tune=params.model.fine_tune, folds=folds)
    if problem is not None:
        # Nothing asks for detection: say why there is none instead of failing the whole pipeline.
        if "pruned" in settings.labels or estimated_needed or validation_needed:
            raise UserError(
                "train.labels has pruned, forward has T: estimated or train.select_score is corrected_estimated, "
                f"but the detect stage cannot run: {problem}"
            )
        print(f"detect: {problem}: nothing detected", file=sys.stderr)
        nothing = {variant_name(loss, labels): None for loss in LOSS_NAMES for labels in LABEL_SETS}
        write_outputs(pd.DataFrame(columns=["seed", "id"]), noisy_table.iloc[:0], nothing, {"skipped": problem})
        return
    clean = clean_run(settings.seeds)

    def run(labels: np.ndarray, repeat: int, source: str) -> tuple[OutOfSample, Issues]:
        return detect_issues(
            features,
            labels,
            num_classes=num_classes,
            folds=folds,
            l2=strengths,
            seed=derived_seed(seed, repeat),
            source=source,
        )

    issue_frames, pruned_frames, noisy_seeds, clean_seeds, estimates = [], [], {}, {}, {}

    for repeat in settings.seeds:
        labels = labels_for_seed(noisy_table, repeat, train_ids, label_file("noisy"))
        flipped = labels != true_labels
        out_of_sample, issues = run(labels, repeat, str(label_file("noisy")))
        probs = out_of_sample.probabilities
        issue_frames.append(issues_table(repeat, train_ids, labels, flipped, issues))
        pruned_frames.append(pruned_rows(noisy_table, repeat, train_ids[issues.flagged]))
        estimates[("noisy", repeat)] = issues.transition
        if estimated_needed:
            # forward-pruned's T: the confident joint of the labels pruning keeps (close to the identity).
            kept = ~issues.flagged
            estimates[("pruned", repeat)] = estimated_transition(labels[kept], probs[kept])[0]
        noisy_seeds[str(repeat)] = seed_metrics(labels, true_labels, out_of_sample, issues, num_classes)
        estimates[("clean", repeat)] = np.asarray(clean[repeat]["transition"], dtype=np.float64)
        clean_seeds[str(repeat)] = {key: clean[repeat][key] for key in CLEAN_KEYS}
        found = noisy_seeds[str(repeat)]
        print(
            f"detect: seed {repeat}: {found['flagged']} flagged, precision {found['precision']:.3f} "
            f"recall {found['recall']:.3f} (small-loss, as many flags: precision "
            f"{found['small_loss_precision']:.3f} recall {found['small_loss_recall']:.3f})",
            file=sys.stderr,
        )

    metrics = detection_summary(folds, pool.names, noisy_seeds, clean_seeds)
    transitions = {
        # Every possible variant, not only train.losses x train.labels: adding a loss or a label set then
        # does not rerun this stage (its params do not name them).
        variant_name(loss, labels): variant_transitions(
            loss, labels, estimates, settings.seeds, forward=estimated_needed, validation=validation_needed
        )
        for loss in LOSS_NAMES
        for labels in LABEL_SETS
    }
    write_outputs(
        pd.concat(issue_frames, ignore_index=True), pd.concat(pruned_frames, ignore_index=True), transitions, metrics
    )


def write_outputs(issues: pd.DataFrame, pruned: pd.DataFrame, transitions: dict, metrics: dict) -> None:
    write_csv(ISSUES_FILE, issues)
    write_csv(label_file("pruned"), pruned)
    with atomic_dir(TRANSITIONS_DIR) as staging:
        for variant, content in transitions.items():
            (staging / transition_file(variant).name).write_text(json.dumps(content) + "\n")
    write_json(details_of(DETECTION_METRICS), metrics)
    write_json(DETECTION_METRICS, detection_headline(metrics["noisy"]) if "noisy" in metrics else {})


if __name__ == "__main__":
    run_stage("detect", main)
