"""Score every variant on the held-out test set (true labels), per seed and over seeds (stages.lib.evaluation,
stages.lib.metrics), compare the variants pairwise (stages.lib.comparisons, docs/experiments.md), and write the
plot data of each variant's first seed. metrics.json holds per variant the mean over seeds with the std beside
each metric, the epoch kept and its accuracy on the validation labels, and `accuracy_ci95`, the Wilson 95 %
interval of one model's accuracy on this many test images (test-set sampling only, not the spread over seeds),
plus a `baseline` entry for always predicting the majority class.
"""

from __future__ import annotations

import sys

import numpy as np

from stages.lib import params as P
from stages.lib.comparisons import PROTOCOL, compare_variants, comparison_pairs, protocol_pairs
from stages.lib.errors import run_stage
from stages.lib.evaluation import evaluate_variant, plot_tables
from stages.lib.io import METRICS_DIR, atomic_dir, label_names, read_prepared, write_json
from stages.lib.labels import BASELINE, oracle_name, variant_name
from stages.lib.metrics import majority_baseline, summarise
from stages.lib.params import loss_settings as L

METRICS_FILE = METRICS_DIR / "metrics.json"
PER_SEED_FILE = METRICS_DIR / "per_seed.json"
COMPARISONS_FILE = METRICS_DIR / "comparisons.json"
PLOTS_DIR = METRICS_DIR / "plots"


def main() -> None:
    raw = L.load_checked_params()
    settings, task = L.train_params(raw), P.task(raw)
    table, summary = read_prepared(task)
    names = label_names(summary)
    y_true = table.loc[table["split"] == "test", "label"].to_numpy(dtype=np.int64)
    train_labels = table.loc[table["split"] == "train", "label"].to_numpy(dtype=np.int64)

    # Heads chosen on a validation set have oracle twins (stages.lib.training.head_trainer).
    twins = not P.model_params(raw).fine_tune and P.data_params(raw).val_size > 0
    variants = []
    for loss in settings.losses:
        for labels in settings.labels:
            variants.append((loss, variant_name(loss, labels)))
            if twins and labels != "clean":
                variants.append((loss, oracle_name(variant_name(loss, labels))))
    summary, per_seed, plots, scores, thresholds = {}, {}, {}, {}, {}
    for loss, variant in variants:
        per_seed[variant], scores[variant] = evaluate_variant(variant, loss, settings, y_true, task, names)
        thresholds[variant] = [run["threshold"] for run in per_seed[variant].values()]
        summary[variant] = summarise(per_seed[variant], len(y_true))
        first = scores[variant][0], thresholds[variant][0]
        plots[variant] = plot_tables(y_true, first[0], task, names, first[1])  # the first seed's
    summary[BASELINE] = majority_baseline(train_labels, y_true, task, names)
    pairs, skipped = comparison_pairs(settings.losses, settings.labels)
    protocol = protocol_pairs(settings.losses, settings.labels) if twins else []
    comparisons = compare_variants(
        y_true,
        scores,
        pairs + protocol,
        task,
        families=dict.fromkeys(protocol, PROTOCOL),
        verdict_metric=P.evaluate_metric(raw),
        thresholds=thresholds,
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
