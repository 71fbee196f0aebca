"""A sweep report's Markdown: the per-metric tables over noise levels, each run's paired comparisons and
detection table, and the report that strings them together (`python -m report`)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from report.experiments import Run
from report.sweep import (
    CALIBRATION_METRICS,
    METRIC_TITLES,
    TABLE_METRICS,
    Sweep,
    as_float,
    curve,
    distinguishing_params,
    repeat_count,
    variants,
)
from stages.lib.core.variants import BASELINE, oracle_name, parse_variant, variant_name
from stages.lib.evaluate.comparisons import ALPHA, STUDY, holm


def format_cell(mean: float, std: float, seeds: int) -> str:
    """`0.812 ± 0.021` over several seeds, `0.812` for one; `–` where nothing was measured."""
    if math.isnan(mean):
        return "–"
    if seeds > 1 and not math.isnan(std):
        return f"{mean:.3f} ± {std:.3f}"
    return f"{mean:.3f}"


def markdown_table(sweep: Sweep, metric: str) -> str:
    """One row per noise level, one column per variant and the majority baseline, plus the run's name."""
    names = variants(sweep)
    curves = {name: curve(sweep, name, metric) for name in [*names, BASELINE]}
    header = ["noise", *names, BASELINE, "experiment"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---:"] * (len(header) - 1) + [":---"]) + "|"]
    for i, run in enumerate(sweep.runs):
        cells = [f"{run.noise:g}"]
        for name in [*names, BASELINE]:
            cells.append(format_cell(curves[name].mean[i], curves[name].std[i], repeat_count(run, name)))
        cells.append(f"`{run.name}`")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _interval_cell(entry: dict[str, Any], metric: str) -> str:
    values = entry.get(metric) or {}
    difference, low, high = (as_float(values.get(key)) for key in ("difference", "ci95_low", "ci95_high"))
    if math.isnan(difference):
        return "–"
    return f"{difference:+.3f} [{low:+.3f}, {high:+.3f}]"


def _p_text(value: Any) -> str:
    p = as_float(value)
    return "–" if math.isnan(p) else (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")


def _from_headline(entry: dict[str, Any]) -> dict[str, Any]:
    """A headline comparison (stages.lib.core.headline.verdict_comparisons) in the detail file's shape: its verdict
    metric's Δ and interval, the Holm p, and Holm's rejection at 0.05 (Holm's adjusted p at most 0.05)."""
    metric = next((key.removeprefix("delta_") for key in entry if key.startswith("delta_")), "?")
    test = {"difference": entry.get(f"delta_{metric}"), **{key: entry.get(key) for key in ("ci95_low", "ci95_high")}}
    p_holm = as_float(entry.get("p_holm"))
    return {"metric": metric, metric: test, "p_holm": entry.get("p_holm"), "significant": p_holm <= ALPHA}


# Holm's family in the report (`python -m report --holm`): the comparisons of one experiment (one noise level)
# as the evaluate stage adjusts them, or the study's comparisons of every level of a sweep together.
HOLM_FAMILIES = ("experiment", "sweep")


def sweep_holm(sweep: Sweep) -> dict[tuple[str, str], tuple[float, bool]]:
    """Holm over the study's verdict p-values of every run of the sweep: (run name, comparison) -> (adjusted p,
    rejected at ALPHA). Only runs whose detail file holds the unadjusted p-values take part."""
    keys, p_values = [], []
    for run in sweep.runs:
        for name, entry in run.all_comparisons.items():
            p = as_float(entry.get("p_value"))
            if entry.get("family", STUDY) == STUDY and not math.isnan(p):
                keys.append((run.name, name))
                p_values.append(p)
    if not p_values:
        return {}
    reject, adjusted = holm(p_values, ALPHA)
    return {key: (float(p), bool(r)) for key, p, r in zip(keys, adjusted, reject, strict=True)}


def comparison_table(run: Run, sweep_adjusted: dict[tuple[str, str], tuple[float, bool]] | None = None) -> str | None:
    """One run's paired comparisons of the study (metrics/details/comparisons.json; the protocol's are in the
    cost table): a row per comparison, B - A per metric with its 95 % interval over repeats and test images,
    the probability of improvement and the p-value on the verdict metric, and its Holm-adjusted p (over the
    experiment, or with `sweep_adjusted` over the sweep). Rows significant after Holm (at 0.05) are marked
    with `*` and their Holm p in bold. Where the detail file was not read, the headline's verdict comparisons
    (verdict metric and Holm p only). None without any."""
    comparisons = {
        name: entry for name, entry in run.all_comparisons.items() if entry.get("family", STUDY) == STUDY
    } or {name: _from_headline(entry) for name, entry in run.verdict_comparisons.items()}
    if sweep_adjusted is not None:
        comparisons = {
            name: {
                **entry,
                "p_holm": sweep_adjusted[(run.name, name)][0],
                "significant": sweep_adjusted[(run.name, name)][1],
            }
            if (run.name, name) in sweep_adjusted
            else {**entry, "p_holm": None, "significant": False}
            for name, entry in comparisons.items()
        }
    if not comparisons:
        return None
    verdicts = {entry.get("metric") for entry in comparisons.values()}
    verdict = METRIC_TITLES.get(next(iter(verdicts)), "?").lower() if len(verdicts) == 1 else "verdict metric"
    header = ["comparison (B vs A)", *(f"Δ {METRIC_TITLES[m].lower()} [95 % CI]" for m in TABLE_METRICS)]
    header += [f"P(B > A), {verdict}", f"p, {verdict}", "Holm p"]
    lines = ["| " + " | ".join(header) + " |", "|:---|" + "|".join(["---:"] * (len(header) - 1)) + "|"]
    for name, entry in comparisons.items():
        significant = entry.get("significant") is True
        cells = [f"{name} *" if significant else name]
        cells += [_interval_cell(entry, metric) for metric in TABLE_METRICS]
        improvement = as_float(entry.get("probability_of_improvement"))
        cells += ["–" if math.isnan(improvement) else f"{improvement:.2f}", _p_text(entry.get("p_value"))]
        holm_p = _p_text(entry.get("p_holm"))
        cells.append(f"**{holm_p}**" if significant else holm_p)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# metrics/details/detection.json's means over seeds: (key in its `noisy` / `clean` section, column title).
DETECTION_COLUMNS = (
    ("noisy", "precision", "precision"),
    ("noisy", "recall", "recall"),
    ("noisy", "f1", "F1"),
    ("noisy", "false_flag_rate", "false flags on correct labels"),
    ("noisy", "auc", "AUC of the score"),
    ("noisy", "average_precision", "AP of the score"),
    ("noisy", "small_loss_precision", "small-loss precision"),
    ("noisy", "small_loss_recall", "small-loss recall"),
    ("noisy", "realised_noise_rate", "realised noise"),
    ("noisy", "estimated_noise_rate", "estimated noise"),
    ("noisy", "noise_rate_error", "estimated − realised"),
    ("clean", "false_flag_rate", "false flags, clean-label run"),
)

DETECTION_TEXT = (
    "Means over seeds of the detect stage's confident-learning flags against the truly flipped training labels. "
    "False flags on correct labels: flags on unflipped labels ÷ unflipped labels, in this run; the last column is "
    "the separate run on the clean labels, where every flag is false. AUC and average precision (AP) rank every "
    "label by its score (1 − self-confidence) with the flipped ones as positives: ranking at random gives AUC 0.5 "
    "and AP = the realised noise rate, as does flagging at random for precision. Small-loss, the obvious "
    "baseline: flag the labels with the largest out-of-sample cross-entropy on the given label (the same "
    "probabilities), as many as confident learning flags; its ranking orders the labels exactly as the score "
    "does (−log p and 1 − p both fall with p), so its AUC and AP are the same (both are in the detail file): "
    "what differs is which labels get flagged."
)


def detection_table(sweep: Sweep) -> str | None:
    """Confident learning per noise level: how its flags find the flipped labels (None if no run has it).
    Flagging at random would have precision equal to the realised noise rate."""
    if not any(run.detection_means for run in sweep.runs):
        return None
    header = ["noise", *(title for _, _, title in DETECTION_COLUMNS), "experiment"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---:"] * (len(header) - 1) + [":---"]) + "|"]
    for run in sweep.runs:
        detection = run.detection_means or {}
        cells = [f"{run.noise:g}"]
        for section, key, _ in DETECTION_COLUMNS:
            cells.append(format_cell(as_float((detection.get(section) or {}).get(key)), math.nan, 1))
        cells.append(f"`{run.name}`")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


COMPARISONS_TEXT = (
    "Per noise level, each noisy variant against every other and against its own clean control, trained on "
    "the same noise draws repeat by repeat and scored on the same test images. Δ is B − A, the mean over "
    "repeats of the test-set difference, with a 95 % t-interval whose variance adds the spread of the "
    "differences over repeats (the noise draws) and test-set sampling (a paired bootstrap over test images, "
    "corrected for the part the spread over repeats already holds); P(B > A) is the share of repeats in which B "
    "beats A (the probability of improvement, Agarwal et al. 2021, paired by repeat). The p-value tests the "
    "verdict metric (`evaluate.metric`). `*` and bold: significant after Holm at 0.05. {family}"
)
HOLM_TEXT = {
    "experiment": "Holm's family: the comparisons of one noise level (one experiment), as the evaluate stage "
    "adjusts them; `python -m report --holm sweep` adjusts over every level of the sweep at once.",
    "sweep": "Holm's family: every comparison in these tables, all noise levels of the sweep together "
    "(`--holm sweep`); the evaluate stage's own adjustment, per level, is in metrics/comparisons.json.",
}

COSTS_TEXT = (
    "What the noisy labels cost each loss at each noise level, balanced accuracy on the test set's true labels, "
    "means over repeats, and where the cost comes from. `clean`: the loss's head on the true labels; `noisy`: "
    "on the corrupted labels, chosen (grid point, threshold) on the noisy validation labels, as a practitioner "
    "would; `oracle`: the same noisy-label heads, chosen with the true labels (the oracle twin). The total cost "
    "(clean − noisy) splits into what the noisy training labels cost (clean − oracle) and what choosing on noisy "
    "labels costs (oracle − noisy), each with its 95 % interval over repeats and test images (the protocol's "
    "comparisons, Holm over their own family). A negative choice cost: the true labels chose worse by this rule."
)


def cost_table(sweep: Sweep) -> str | None:
    """Per noise level and loss with a noisy variant and its oracle twin: clean, noisy and oracle balanced
    accuracy, and the total cost split into training labels and selection (None without any twin)."""
    rows = []
    for run in sweep.runs:
        values, comparisons = run.variant_values, run.all_comparisons
        for name in variants(sweep):
            loss, labels = parse_variant(name)
            twin, clean = oracle_name(name), variant_name(loss, "clean")
            if labels == "clean" or twin not in values:
                continue
            mean = {v: as_float((values.get(v) or {}).get("balanced_accuracy")) for v in (name, twin, clean)}
            selection = comparisons.get(f"{twin} vs {name}", {})
            training = comparisons.get(f"{twin} vs {clean}", {})
            rows.append(
                [
                    f"{run.noise:g}",
                    name,
                    *(format_cell(mean[v], math.nan, 1) for v in (clean, name, twin)),
                    format_cell(mean[clean] - mean[name], math.nan, 1),
                    _negated_interval_cell(training, "balanced_accuracy"),
                    _interval_cell(selection, "balanced_accuracy"),
                    f"`{run.name}`",
                ]
            )
    if not rows:
        return None
    header = ["noise", "variant", "clean", "noisy", "oracle", "total cost", "training labels [95 % CI]"]
    header += ["choosing on noisy labels [95 % CI]", "experiment"]
    lines = ["| " + " | ".join(header) + " |", "|---:|:---|" + "|".join(["---:"] * (len(header) - 3)) + "|:---|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _negated_interval_cell(entry: dict[str, Any], metric: str) -> str:
    """The interval cell of A − B from the entry of B − A."""
    values = entry.get(metric) or {}
    flipped = {key: 0.0 - as_float(values.get(key)) for key in ("difference", "ci95_low", "ci95_high")}
    flipped["ci95_low"], flipped["ci95_high"] = flipped["ci95_high"], flipped["ci95_low"]
    return _interval_cell({metric: flipped}, metric)


# Params worth repeating above each sweep's tables (the rest is in `dvc exp show`).
SUMMARY_PARAMS = (
    "task",
    "noise_type",
    "train.losses",
    "train.labels",
    "train.seeds",
    "train.select_by",
    "train.threshold",
    "train.threshold_folds",
    "data.val_size",
    "model.weights",
    "data.image_size",
)


def _param_text(params: dict[str, Any], markdown: bool = True) -> str:
    quote = "`" if markdown else ""
    return ", ".join(f"{quote}{key}={json.dumps(value, default=str)}{quote}" for key, value in params.items())


def sweep_title(index: int, distinct: dict[str, Any], count: int, markdown: bool = True) -> str:
    """ "Noise sweep" when there is one; else its number and the params that set it apart."""
    if count == 1:
        return "Noise sweep"
    return f"Sweep {index + 1}: {_param_text(distinct, markdown)}"


def markdown_report(
    sweeps: list[Sweep], skipped: Iterable[Any] = (), figure: str | None = None, holm_family: str = "experiment"
) -> str:
    """results.md: per sweep, what it ran, one table per metric, the costs of the noise, the paired comparisons
    (Holm over `holm_family`: HOLM_FAMILIES) and detection; then what was left out and why."""
    lines = ["# Label noise: results by noise rate", ""]
    if figure:
        lines += [f"![accuracy against noise rate]({figure})", ""]
    lines += [
        "Each cell is the mean over the `train.seeds` repeats on the test set's true labels, ± the sample "
        "standard deviation over seeds where there are several. `<loss>-noisy` heads learn from labels "
        "corrupted at the row's noise rate, `<loss>-pruned` heads from those without the labels confident "
        "learning flags; `<loss>-clean` heads (controls) from the true labels, so they do "
        "not depend on it; `baseline` always answers the training pool's majority class. Rows come from the "
        "experiment named in the last column (`dvc exp show` has all of its params and headline metrics). A "
        "variant's `accuracy_ci95` in metrics/details/metrics.json is one model's test-sampling interval "
        "(Wilson), not the spread over seeds.",
        "",
    ]
    distinct = distinguishing_params(sweeps)
    for index, sweep in enumerate(sweeps):
        lines += [f"## {sweep_title(index, distinct[index], len(sweeps))}", ""]
        summary = {key: sweep.config[key] for key in SUMMARY_PARAMS if key in sweep.config}
        levels = ", ".join(f"{noise:g}" for noise in sweep.noise_levels)
        lines += [f"Noise levels: {levels}. Params: {_param_text(summary)}.", ""]
        for metric in TABLE_METRICS:
            lines += [f"### {METRIC_TITLES[metric]}", "", markdown_table(sweep, metric), ""]
        for metric in CALIBRATION_METRICS:  # lower is better; on the test set's true labels (docs/calibration.md)
            if any(metric in values for run in sweep.runs for values in run.variant_values.values()):
                lines += [f"### {METRIC_TITLES[metric]} (lower is better)", "", markdown_table(sweep, metric), ""]
        costs = cost_table(sweep)
        if costs:
            lines += ["### What the noise costs, and where", "", COSTS_TEXT, "", costs, ""]
        adjusted = sweep_holm(sweep) if holm_family == "sweep" else None
        tables = [(run, comparison_table(run, adjusted)) for run in sweep.runs]
        if any(table for _, table in tables):
            text = COMPARISONS_TEXT.format(family=HOLM_TEXT[holm_family])
            lines += ["### Paired comparisons", "", text, ""]
            for run, table in tables:
                if table:
                    lines += [f"#### noise {run.noise:g} (`{run.name}`)", "", table, ""]
        detection = detection_table(sweep)
        if detection:
            lines += ["### Finding the flipped labels (confident learning)", "", DETECTION_TEXT, "", detection, ""]
        headline_only = [f"`{run.name}`" for run in sweep.runs if not run.details and not run.all_comparisons]
        if headline_only:
            lines += [
                f"Headline numbers only for {', '.join(headline_only)}: no standard deviations, and of the "
                "comparisons only the verdict metric's. Their detail files (metrics/details/, DVC outputs) are "
                "in neither the DVC cache nor the remote here: `dvc exp pull origin` (without `--no-cache`) or "
                "`dvc pull` fetches them.",
                "",
            ]
        if sweep.superseded:
            older = ", ".join(f"`{run.name}` (noise {run.noise:g})" for run in sweep.superseded)
            lines += [f"Superseded by a newer run at the same noise level: {older}.", ""]
    left_out = [f"`{row.name}` ({row.reason})" for row in skipped]
    if left_out:
        lines += ["## Not included", "", "Rows of `dvc exp show` without results: " + ", ".join(left_out) + ".", ""]
    return "\n".join(lines)
