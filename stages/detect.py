"""Confident learning on the training pool (stages.lib.detection): find the flipped labels, prune them,
estimate the noise.

Per train seed, K-fold cross-validation (`detect.folds`) of an L2 logistic regression (its strength chosen
from `detect.l2` by out-of-fold log-loss on the same labels) on that seed's noisy labels gives
out-of-sample probabilities; cleanlab flags the label issues (prune by noise rate) and ranks every label
(score = 1 - self-confidence: higher is more suspect). The same runs on the clean labels, where every flag
is a false one. Beside the flags and the pruned label set, each variant of the train matrix gets its own
transitions file (dvc.yaml says why): the estimated matrix per seed for forward variants with
`T: estimated`, the noisy labels' for noisy and pruned variants with `train.select_score:
corrected_estimated`, null otherwise. The metrics compare the flags with the flipped labels, against the
small-loss baseline (the same out-of-sample probabilities' cross-entropy on the given label, flagging as
many), and the estimated noise with the realised one.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

from stages.lib import params as P
from stages.lib.detection import (
    Issues,
    OutOfSample,
    detection_metrics,
    estimated_transition,
    find_issues,
    issues_table,
    mean_over_seeds,
    noise_rate_metrics,
    out_of_sample_probabilities,
    pruned_rows,
    small_loss_metrics,
    smallest_class,
)
from stages.lib.errors import UserError, run_stage
from stages.lib.io import (
    METRICS_DIR,
    atomic_dir,
    features_path,
    label_names,
    load_array,
    read_csv,
    read_prepared,
    write_csv,
    write_json,
)
from stages.lib.labels import (
    ISSUES_FILE,
    TRANSITIONS_DIR,
    label_file,
    labels_for_seed,
    transition_file,
    variant_name,
)
from stages.lib.noise import transition_matrix
from stages.lib.params import loss_settings as L
from stages.lib.seeds import derived_seed

DETECTION_METRICS = METRICS_DIR / "detection.json"
MEAN_KEYS = (
    "precision",
    "recall",
    "f1",
    "false_flag_rate",
    "auc",
    "average_precision",
    "small_loss_precision",
    "small_loss_recall",
    "small_loss_f1",
    "small_loss_auc",
    "small_loss_average_precision",
    "estimated_noise_rate",
    "realised_noise_rate",
    "noise_rate_error",
    "abs_noise_rate_error",
)


def rounded(matrix: np.ndarray) -> list:
    return np.round(matrix, 6).tolist()


def main() -> None:
    raw = L.load_checked_params()
    settings, task, seed, folds = L.train_params(raw), P.task(raw), P.seed(raw), P.detect_folds(raw)
    strengths = P.detect_l2(raw)
    # train.select_score: corrected_estimated corrects each noisy or pruned variant's selection score with
    # the estimated T of the noisy labels (the validation labels are drawn like the training pool's).
    validation_needed = P.SELECT_SCORE_TRANSITIONS[settings.select_score] == "estimated"
    table, summary = read_prepared(task)
    num_classes = len(label_names(summary))
    train_ids = table.loc[table["split"] == "train", "id"].to_numpy()
    true_labels = table.loc[table["split"] == "train", "label"].to_numpy(dtype=np.int64)
    noisy_table = read_csv(label_file("noisy"))
    forward_params = L.validate_loss_params("forward", (raw["train"].get("loss_params") or {}).get("forward"))
    estimated_needed = forward_params["T"] == "estimated"
    features = load_array(features_path("train"))
    if len(features) and len(features) != len(train_ids):
        raise UserError(
            f"{features_path('train')} has {len(features)} rows, the training pool {len(train_ids)}: rerun `dvc repro`"
        )
    problem = None
    if P.model_params(raw).fine_tune or features.ndim != 2 or features.shape[1] == 0:
        problem = "model.fine_tune: true leaves no cached features for the head"
    elif smallest_class(true_labels) < folds:
        problem = f"detect.folds = {folds} but a class has only {smallest_class(true_labels)} training labels"
    if problem is not None:
        # Nothing asks for detection: say why there is none instead of failing the whole pipeline.
        if "pruned" in settings.labels or estimated_needed or validation_needed:
            raise UserError(
                "train.labels has pruned, forward has T: estimated or train.select_score is corrected_estimated, "
                f"but the detect stage cannot run: {problem}"
            )
        print(f"detect: {problem}: nothing detected", file=sys.stderr)
        nothing = {variant_name(loss, labels): None for loss in L.LOSS_NAMES for labels in P.LABEL_SET_NAMES}
        write_outputs(pd.DataFrame(columns=["seed", "id"]), noisy_table.iloc[:0], nothing, {"skipped": problem})
        return

    def run(labels: np.ndarray, repeat: int, source: str) -> tuple[OutOfSample, Issues]:
        if smallest_class(labels) < folds:
            raise UserError(
                f"detect.folds = {folds}: {source} has a class with only {smallest_class(labels)} training labels; "
                "each class needs at least one per fold (lower detect.folds or raise data.train_size)"
            )
        out_of_sample = out_of_sample_probabilities(
            features, labels, num_classes=num_classes, folds=folds, l2=strengths, seed=derived_seed(seed, repeat)
        )
        return out_of_sample, find_issues(labels, out_of_sample.probabilities)

    issue_frames, pruned_frames, noisy_seeds, clean_seeds, estimates = [], [], {}, {}, {}

    def variant_transitions(loss: str, labels: str, forward: bool, validation: bool) -> dict | None:
        """One variant's file: forward's T per seed (`seeds`), the validation labels' T (`validation`) for
        noisy and pruned variants; null when the variant needs neither."""
        content: dict = {}
        if forward and loss == "forward":
            content = {"T": "estimated", "seeds": {str(r): estimates[(labels, r)].tolist() for r in settings.seeds}}
        if validation and labels != "clean":
            content["validation"] = {str(r): estimates[("noisy", r)].tolist() for r in settings.seeds}
        return content or None

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
        noisy_seeds[str(repeat)] = {
            **detection_metrics(flipped, issues.flagged, issues.score),
            **small_loss_metrics(flipped, labels, probs, int(issues.flagged.sum())),
            **noise_rate_metrics(issues.estimated_noise_rate, flipped),
            "estimated_transition_matrix": rounded(issues.transition),
            "realised_transition_matrix": rounded(transition_matrix(true_labels, labels, num_classes)),
        }
        # The out-of-fold model: its L2 strength and the out-of-fold log-loss that chose it (noisy labels only).
        noisy_seeds[str(repeat)]["model"] = {"l2": out_of_sample.l2, "log_loss": out_of_sample.log_loss}
        _, clean_issues = run(true_labels, repeat, str(label_file("clean")))
        estimates[("clean", repeat)] = clean_issues.transition
        clean_seeds[str(repeat)] = {
            "false_flag_rate": float(clean_issues.flagged.mean()),
            "flagged": int(clean_issues.flagged.sum()),
            "estimated_noise_rate": clean_issues.estimated_noise_rate,
        }
        found = noisy_seeds[str(repeat)]
        print(
            f"detect: seed {repeat}: {found['flagged']} flagged, precision {found['precision']:.3f} "
            f"recall {found['recall']:.3f} (small-loss, as many flags: precision "
            f"{found['small_loss_precision']:.3f} recall {found['small_loss_recall']:.3f})",
            file=sys.stderr,
        )

    metrics = {
        "method": "cleanlab find_label_issues, prune_by_noise_rate; score = 1 - self-confidence",
        "baseline": "small-loss: -log p(given label), the same out-of-sample probabilities; flags the top as many",
        "folds": folds,
        "label_names": label_names(summary),
        "noisy": {**mean_over_seeds(noisy_seeds, MEAN_KEYS), "seeds": noisy_seeds},
        "clean": {**mean_over_seeds(clean_seeds, ("false_flag_rate", "estimated_noise_rate")), "seeds": clean_seeds},
    }
    transitions = {
        # Every possible variant, not only train.losses x train.labels: adding a loss or a label set then
        # does not rerun this stage (its params do not name them).
        variant_name(loss, labels): variant_transitions(loss, labels, estimated_needed, validation_needed)
        for loss in L.LOSS_NAMES
        for labels in P.LABEL_SET_NAMES
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
    write_json(DETECTION_METRICS, metrics)


if __name__ == "__main__":
    run_stage("detect", main)
