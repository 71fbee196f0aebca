"""Score every variant on the held-out test set (true labels), per seed and over seeds (stages.lib.evaluate:
scoring, metrics), compare the variants pairwise (stages.lib.evaluate.comparisons, docs/experiments.md), and write the
plot data of each variant's first seed.

The headline files (stages.lib.core.headline), which DVC compares across runs: metrics/metrics.json, per variant
the means over seeds of balanced accuracy, AUC, accuracy and ECE, plus a `baseline` entry for always
predicting the majority class; metrics/comparisons.json, the verdict comparisons. Their detail files under
metrics/details/: every metric's mean and std over seeds, the epoch kept and its accuracy on the validation
labels, `accuracy_ci95` (the Wilson 95 % interval of one model's accuracy on this many test images: test-set
sampling only, not the spread over seeds); every comparison of every metric; every seed's metrics.
"""

from __future__ import annotations

import sys

import numpy as np

from stages.lib.core.errors import run_stage
from stages.lib.core.headline import reference_loss, variant_means, verdict_comparisons
from stages.lib.core.io import (
    COMPARISON_METRICS,
    METRICS_DIR,
    PER_SEED_DETAILS,
    VARIANT_METRICS,
    atomic_dir,
    details_of,
    label_names,
    read_prepared,
    write_json,
)
from stages.lib.core.variants import BASELINE, has_oracle_twin, oracle_name, variant_name
from stages.lib.evaluate.comparisons import PROTOCOL, STUDY, compare_variants, comparison_pairs, protocol_pairs
from stages.lib.evaluate.metrics import majority_baseline, summarise
from stages.lib.evaluate.scoring import evaluate_variant, plot_tables
from stages.lib.losses.settings import read_params_with_losses

PLOTS_DIR = METRICS_DIR / "plots"


def main() -> None:
    params = read_params_with_losses()
    settings, task = params.train, params.task
    table, summary = read_prepared(task)
    names = label_names(summary)
    y_true = table.loc[table["split"] == "test", "label"].to_numpy(dtype=np.int64)
    train_labels = table.loc[table["split"] == "train", "label"].to_numpy(dtype=np.int64)

    def twinned(labels: str) -> bool:
        return has_oracle_twin(labels, fine_tune=params.model.fine_tune, validating=params.data.val_size > 0)

    variants = []
    for loss in settings.losses:
        for labels in settings.labels:
            variants.append((loss, variant_name(loss, labels), False))
            if twinned(labels):
                variants.append((loss, oracle_name(variant_name(loss, labels)), True))
    summary, per_seed, plots, scores, thresholds = {}, {}, {}, {}, {}
    for loss, variant, twin in variants:
        per_seed[variant], scores[variant] = evaluate_variant(variant, loss, settings, y_true, task, names)
        thresholds[variant] = [run["threshold"] for run in per_seed[variant].values()]
        summary[variant] = summarise(per_seed[variant], len(y_true))
        if not twin:  # an oracle twin is scored, not plotted
            first = scores[variant][0], thresholds[variant][0]
            plots[variant] = plot_tables(y_true, first[0], task, names, first[1])  # the first seed's
    summary[BASELINE] = majority_baseline(train_labels, y_true, task, names)
    pairs, skipped = comparison_pairs(settings.losses, settings.labels)
    protocol = protocol_pairs(settings.losses, settings.labels) if any(map(twinned, settings.labels)) else []
    verdict_metric = params.evaluate.metric
    comparisons = compare_variants(
        y_true,
        scores,
        pairs + protocol,
        task,
        families=dict.fromkeys(protocol, PROTOCOL),
        verdict_metric=verdict_metric,
        thresholds=thresholds,
    )

    with atomic_dir(PLOTS_DIR) as staging:
        for variant, tables in plots.items():
            for kind, frame in tables.items():
                (staging / kind).mkdir(exist_ok=True)
                frame.to_csv(staging / kind / f"{variant}.csv", index=False, lineterminator="\n")
    write_json(PER_SEED_DETAILS, per_seed)
    write_json(details_of(COMPARISON_METRICS), comparisons)
    write_json(details_of(VARIANT_METRICS), summary)
    # The headline holds the study's verdicts; the protocol's comparisons (oracle twins) are in the details.
    study = {name: entry for name, entry in comparisons.items() if entry["family"] == STUDY}
    write_json(COMPARISON_METRICS, verdict_comparisons(study, reference_loss(settings.losses)))
    write_json(VARIANT_METRICS, variant_means(summary, verdict_metric))
    for variant, result in summary.items():
        low, high = result["accuracy_ci95"]
        print(
            f"evaluate: {variant:>18}  balanced accuracy {result['balanced_accuracy']:.4f}  auc {result['auc']:.4f}  "
            f"accuracy {result['accuracy']:.4f} [{low:.3f}, {high:.3f}]",
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
