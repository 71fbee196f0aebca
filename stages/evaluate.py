"""Stage 6: score every variant on the held-out test set (true labels), per seed and over seeds.

It reads the test-set predictions the train stage saved beside each model, so it runs the same way
whether the variants are heads on cached features or fine-tuned ResNet50s, and runs no network itself
(nor loads TensorFlow: the test losses are computed with the losses' NumPy backend).

Writes metrics/metrics.json (one entry per variant `<loss>-<labels>` with the mean over seeds, the
std beside each metric, the epoch kept and its accuracy on the validation labels (`epoch`,
`val_accuracy`), and `accuracy_ci95`: the Wilson 95 % interval of one model's accuracy on this many test
images (test-set sampling only, not the spread over seeds), plus a `baseline` entry for always
predicting the majority class), metrics/per_seed.json (every seed's values), metrics/comparisons.json
(paired comparisons of the variants: stages.lib.comparisons.compare_variants, docs/experiments.md), and
plot data:
metrics/plots/confusion/<variant>.csv, metrics/plots/reliability/<variant>.csv (the reliability diagram's
non-empty bins: stages.lib.metrics.reliability_bins) and, for the binary task,
metrics/plots/roc/<variant>.csv (all from the first seed). Calibration (`ece`, `brier`) is in metrics.json.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from stages.lib import params as P
from stages.lib.comparisons import compare_variants, comparison_pairs
from stages.lib.errors import UserError, run_stage
from stages.lib.io import METRICS_DIR, atomic_dir, label_names, load_array, read_json, read_prepared, write_json
from stages.lib.labels import BASELINE, SCORES_FILE, SELECTION_FILE, model_dir, targets, variant_name
from stages.lib.metrics import (
    DECISION_THRESHOLD,
    binary_metrics,
    majority_baseline,
    multiclass_metrics,
    predict_labels,
    reliability_bins,
    summarise,
)

METRICS_FILE = METRICS_DIR / "metrics.json"
PER_SEED_FILE = METRICS_DIR / "per_seed.json"
COMPARISONS_FILE = METRICS_DIR / "comparisons.json"
PLOTS_DIR = METRICS_DIR / "plots"


def score(y_true: np.ndarray, scores: np.ndarray, task: str, names: list[str], threshold: float) -> dict:
    if task == "binary":
        return binary_metrics(y_true, scores, threshold)
    return multiclass_metrics(y_true, scores, names)


def test_scores(variant: str, repeat: int, rows: int, task: str, num_classes: int) -> np.ndarray:
    """The test-set predictions the train stage wrote for one seed's model, checked against the test set."""
    path = model_dir(variant) / SCORES_FILE.format(seed=repeat)
    if not path.exists():
        raise UserError(f"{path} not found: run `dvc repro` (train stage {variant})")
    scores = load_array(path).astype(np.float64)
    expected = (rows,) if task == "binary" else (rows, num_classes)
    if scores.shape != expected:
        raise UserError(f"{path} holds {scores.shape} scores, the test set needs {expected}: rerun `dvc repro`")
    return scores


def selection(variant: str, repeat: int) -> dict:
    """What the train stage chose for one seed's model: the epoch kept (from 1), its accuracy on the validation
    labels, and whatever else it selected on them (the decision threshold, hyper-parameters), as saved."""
    saved = read_json(model_dir(variant) / SELECTION_FILE.format(seed=repeat))
    chosen = {key: value for key, value in saved.items() if key != "select_epoch"}
    # None without a validation set: NaN, so that metrics.json says null.
    chosen["val_accuracy"] = float("nan") if saved.get("val_accuracy") is None else saved["val_accuracy"]
    chosen.setdefault("threshold", DECISION_THRESHOLD)
    return chosen


def evaluate_variant(
    variant: str,
    loss: str,
    settings: P.TrainParams,
    y_true: np.ndarray,
    task: str,
    names: list[str],
) -> tuple[dict[str, dict], list[np.ndarray]]:
    """Metrics of each seed's model, and each seed's test scores (in seed order)."""
    from stages.lib.losses import mean_loss

    per_seed, all_scores = {}, []
    for repeat in settings.seeds:
        scores = test_scores(variant, repeat, len(y_true), task, len(names))
        chosen = selection(variant, repeat)
        result = score(y_true, scores, task, names, chosen["threshold"])
        y_onehot = targets(y_true, task, len(names))
        prob_matrix = scores.reshape(-1, 1) if task == "binary" else scores
        # The test labels are true: for the forward loss their noise model is the identity (plain CE).
        transition = np.eye(len(names)) if loss == "forward" else None
        result["loss"] = mean_loss(loss, task, settings.loss_params[loss], y_onehot, prob_matrix, transition)
        result["log_loss"] = mean_loss("bce", task, {}, y_onehot, prob_matrix)
        per_seed[str(repeat)] = {**result, **chosen}
        all_scores.append(scores)
    return per_seed, all_scores


def plot_tables(
    y_true: np.ndarray, scores: np.ndarray, task: str, names: list[str], threshold: float
) -> dict[str, pd.DataFrame]:
    """Data for DVC's confusion template (actual, predicted; at the model's own threshold), the reliability
    diagram (its non-empty bins: stages.lib.metrics.reliability_bins) and, for binary, the ROC curve."""
    bins = reliability_bins(y_true, scores, task)
    used = bins["count"] > 0
    predicted = predict_labels(scores, task, threshold)
    tables = {
        "confusion": pd.DataFrame({"actual": np.array(names)[y_true], "predicted": np.array(names)[predicted]}),
        "reliability": pd.DataFrame(
            {
                "bin": np.flatnonzero(used) + 1,
                "low": np.round(bins["low"][used], 6),
                "high": np.round(bins["high"][used], 6),
                "predicted": bins["predicted"][used],
                "observed": bins["observed"][used],
                "count": bins["count"][used],
            }
        ),
    }
    if task == "binary":
        fpr, tpr, thresholds = roc_curve(y_true, scores)
        tables["roc"] = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.clip(thresholds, 0, 1)})
    return tables


def main() -> None:
    raw = P.load_checked_params()
    settings, task = P.train_params(raw), P.task(raw)
    table, summary = read_prepared(task)
    names = label_names(summary)
    y_true = table.loc[table["split"] == "test", "label"].to_numpy(dtype=np.int64)
    train_labels = table.loc[table["split"] == "train", "label"].to_numpy(dtype=np.int64)

    summary, per_seed, plots, scores, thresholds = {}, {}, {}, {}, {}
    for loss in settings.losses:
        for labels in settings.labels:
            variant = variant_name(loss, labels)
            per_seed[variant], scores[variant] = evaluate_variant(variant, loss, settings, y_true, task, names)
            thresholds[variant] = [run["threshold"] for run in per_seed[variant].values()]
            summary[variant] = summarise(per_seed[variant], len(y_true))
            first = scores[variant][0], thresholds[variant][0]
            plots[variant] = plot_tables(y_true, first[0], task, names, first[1])  # the first seed's
    summary[BASELINE] = majority_baseline(train_labels, y_true, task, names)
    pairs, skipped = comparison_pairs(settings.losses, settings.labels)
    comparisons = compare_variants(
        y_true, scores, pairs, task, verdict_metric=P.evaluate_metric(raw), thresholds=thresholds
    )

    with atomic_dir(PLOTS_DIR) as staging:
        for variant, tables in plots.items():
            for kind, frame in tables.items():
                (staging / kind).mkdir(exist_ok=True)
                frame.to_csv(staging / kind / f"{variant}.csv", index=False, lineterminator="\n")
    write_json(PER_SEED_FILE, per_seed)
    write_json(COMPARISONS_FILE, comparisons)
    write_json(METRICS_FILE, summary)
    for variant, result in summary.items():
        low, high = result["accuracy_ci95"]
        print(
            f"evaluate: {variant:>18}  accuracy {result['accuracy']:.4f} [{low:.3f}, {high:.3f}]  "
            f"balanced {result['balanced_accuracy']:.4f}  auc {result['auc']:.4f}",
            file=sys.stderr,
        )
    for line in skipped:
        print(f"evaluate: comparisons skipped: {line}", file=sys.stderr)
    for name, entry in comparisons.items():
        verdict = entry[entry["metric"]]
        p = "needs 2 repeats" if entry["p_holm"] is None else f"Holm p {entry['p_holm']:.3g}"
        star = " *" if entry["significant"] else ""
        print(f"evaluate: {name}: Δ {entry['metric']} {verdict['difference']:+.4f}, {p}{star}", file=sys.stderr)


if __name__ == "__main__":
    run_stage("evaluate", main)
