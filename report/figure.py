"""The noise-curve figure, a row of panels per sweep: balanced accuracy, each loss's gain over the tuned BCE
on the same labels (the verdict comparisons, with their 95 % intervals), AUC and accuracy, against the noise
rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from report.sweep import (
    METRIC_TITLES,
    Curve,
    Sweep,
    as_float,
    curve,
    distinguishing_params,
    realised_flip_rates,
    variants,
)
from report.tables import sweep_title
from stages.lib.core.headline import reference_loss
from stages.lib.core.io import atomic_path
from stages.lib.core.variants import BASELINE, ORACLE, parse_variant
from stages.lib.evaluate.comparisons import ALPHA

NOISE_LABEL = "noise rate (fraction of training labels flipped)"
FLIP_LABEL = "realised flip rate (fraction of training labels changed, mean over seeds)"

# The panels of a row: a metric against noise, or "gain" (the verdict comparisons against the reference loss).
GAIN = "gain"
PANELS = ("balanced_accuracy", GAIN, "auc", "accuracy")
BASELINE_COLOUR = "0.35"
ORACLE_SUFFIX = f":{ORACLE}"
PANEL_SIZE = (4.6, 4.0)  # inches per panel


def _loss_of(variant: str) -> str:
    return parse_variant(variant)[0]


def _binary_flip(sweep: Sweep) -> bool:
    """Binary labels flipped at the noise rate: at 0.5 they carry no information, above it they invert."""
    return sweep.config.get("task") == "binary" and sweep.config.get("noise_type") == "symmetric"


def draw_noise_curves(sweeps: list[Sweep], path: Path | str) -> None:
    """The figure (noise_curve_figure) as a PNG file."""
    import matplotlib.pyplot as plt

    figure = noise_curve_figure(sweeps)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)


def noise_curve_figure(sweeps: list[Sweep]) -> Any:
    """One row of panels per sweep (PANELS); lines are means over seeds with ± 1 std error bars, the gain
    panel's points Δ with their 95 % intervals (filled where significant after Holm). A matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    distinct = distinguishing_params(sweeps)
    width, height = PANEL_SIZE
    figure, axes = plt.subplots(
        len(sweeps), len(PANELS), figsize=(width * len(PANELS), height * len(sweeps) + 1.3), squeeze=False
    )
    # One colour per loss across every sweep, so a loss looks the same in every panel.
    losses = list(dict.fromkeys(_loss_of(name) for sweep in sweeps for name in variants(sweep)))
    colours = {loss: plt.get_cmap("tab10")(i % 10) for i, loss in enumerate(losses)}
    # `noise` is not the fraction flipped under every noise model: x is what was realised where it differs.
    flip_rates = [realised_flip_rates(sweep) for sweep in sweeps]
    # The x-axis covers the swept range (of what is drawn on it), not all of [0, 1].
    drawn = [
        x
        for sweep, flips in zip(sweeps, flip_rates, strict=True)
        for x in (sweep.noise_levels if flips is None else flips)
    ]
    drawn = [float(x) for x in drawn if np.isfinite(x)]
    low, high = (min(drawn), max(drawn)) if drawn else (0.0, 1.0)
    margin = max(0.02, 0.04 * (high - low))
    for row, sweep in enumerate(sweeps):
        names, flips = variants(sweep), flip_rates[row]
        # Neighbouring losses' error bars side by side, not on top of each other.
        offsets = _offsets(names, (high - low) or 1.0)
        for column, panel in enumerate(PANELS):
            axis = axes[row][column]
            if panel == GAIN:
                title = _draw_gains(axis, sweep, flips, colours, offsets)
            else:
                for name in names:
                    values = _on_x(curve(sweep, name, panel), flips)
                    _draw_variant(axis, values, name, colours[_loss_of(name)], offsets.get(name, 0.0))
                baseline = _on_x(curve(sweep, BASELINE, panel), flips)
                _draw_control(axis, baseline, "majority baseline", BASELINE_COLOUR, ":")
                axis.set_ylabel(METRIC_TITLES[panel] + " (test set, true labels)")
                title = METRIC_TITLES[panel]
            axis.set_xlim(low - margin, high + margin)
            if _binary_flip(sweep) and low - margin < 0.5 < high + margin:
                _mark_no_information(axis)
            axis.set_xlabel(NOISE_LABEL if flips is None else FLIP_LABEL, fontsize=8)
            axis.grid(alpha=0.3)
            if len(sweeps) > 1:
                title = f"{sweep_title(row, distinct[row], len(sweeps), markdown=False)}\n{title}"
            axis.set_title(title, fontsize=10)
    # One legend for the figure, below the panels: the union of every panel's lines.
    legend = {}
    for axis in axes.flat:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    columns = min(len(legend), 6) or 1
    figure.legend(legend.values(), legend.keys(), loc="lower center", ncol=columns, fontsize=9, frameon=False)
    seeds = max(sweep.seeds for sweep in sweeps)
    spread = f"error bars ± 1 standard deviation over {seeds} seeds" if seeds > 1 else "one seed: no error bars"
    pruned = ", dash-dot: pruned" if any(name.endswith("-pruned") for name in legend) else ""
    pruned += ", dotted: oracle twins" if any(ORACLE_SUFFIX in name for name in legend) else ""
    figure.suptitle(
        f"Label noise vs. loss on {_data_and_backbone(sweeps)}\nsolid: noisy labels{pruned}, dashed: clean-label "
        f"controls; {spread}; gain panel: Δ and 95 % interval over repeats and test images, filled where "
        f"significant after Holm (α = {ALPHA:g})",
        fontsize=10,
    )
    legend_rows = -(-len(legend) // columns)
    figure.tight_layout(rect=(0, (0.35 + 0.22 * legend_rows) / figure.get_figheight(), 1, 1))
    return figure


def _offsets(names: list[str], span: float) -> dict[str, float]:
    """A small x shift per noisy (or pruned) variant, centred on 0: 1.2 % of the swept range apart."""
    moving = [name for name in names if not name.endswith("-clean")]
    return {name: (i - (len(moving) - 1) / 2) * 0.012 * span for i, name in enumerate(moving)}


def _mark_no_information(axis) -> None:
    """A vertical line at 0.5, labelled inside the axes on the side with more room."""
    axis.axvline(0.5, color="0.75", lw=1, zorder=0)
    left, right = axis.get_xlim()
    room_right = (right - 0.5) >= (0.5 - left)
    axis.text(
        0.5 + (0.005 if room_right else -0.005) * (right - left),
        0.98,
        "labels carry\nno information",
        transform=axis.get_xaxis_transform(),
        ha="left" if room_right else "right",
        va="top",
        fontsize=7,
        color="0.45",
        clip_on=True,
        bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1},
    )


def _draw_gains(axis, sweep: Sweep, flips: np.ndarray | None, colours: dict, offsets: dict[str, float]) -> str:
    """Per noise level, each loss's verdict comparison against the reference loss on the same labels (the
    headline's `<loss>-<labels> vs <reference>-<labels>`): Δ with its 95 % interval. Returns the panel title."""
    losses = sweep.config.get("train.losses")
    reference = reference_loss(losses) if isinstance(losses, list) and losses else "bce"
    x_values = sweep.noise_levels if flips is None else list(flips)
    series: dict[str, list[tuple[float, float, float, float, bool]]] = {}
    metrics = set()
    for x, run in zip(x_values, sweep.runs, strict=True):
        for name, entry in run.verdict_comparisons.items():
            b, _, a = name.partition(" vs ")
            if parse_variant(a) != (reference, parse_variant(b)[1]):
                continue  # a label-set comparison (noisy vs clean): in the tables
            metric = next((key.removeprefix("delta_") for key in entry if key.startswith("delta_")), None)
            delta = as_float(entry.get(f"delta_{metric}"))
            if metric is None or not np.isfinite(delta):
                continue
            metrics.add(metric)
            low, high = as_float(entry.get("ci95_low")), as_float(entry.get("ci95_high"))
            significant = as_float(entry.get("p_holm")) <= ALPHA
            series.setdefault(b, []).append((x + offsets.get(b, 0.0), delta, low, high, significant))
    axis.axhline(0.0, color="0.3", lw=1)
    for name, points in series.items():
        x, delta, low, high, significant = (np.array(column) for column in zip(*points, strict=True))
        colour = colours[_loss_of(name)]
        errors = np.vstack([delta - low, high - delta])
        style = "-." if name.endswith("-pruned") else "-"
        axis.plot(x, delta, style, color=colour, lw=1.2, alpha=0.8, label=name)
        axis.errorbar(x, delta, yerr=np.nan_to_num(errors), fmt="none", ecolor=colour, elinewidth=1.2, capsize=3)
        marker = "s" if name.endswith("-pruned") else "o"
        axis.plot(x[significant], delta[significant], marker, color=colour, ms=6, ls="none")
        axis.plot(x[~significant], delta[~significant], marker, mfc="white", mec=colour, ms=6, ls="none")
    metric = next(iter(metrics)) if len(metrics) == 1 else "verdict metric"
    title = METRIC_TITLES.get(metric, metric)
    axis.set_ylabel(f"Δ {title.lower()} vs {reference.upper()} (same labels)")
    if not series:
        axis.text(0.5, 0.5, "no comparison with the reference loss", transform=axis.transAxes, ha="center")
    return f"Gain over the tuned {reference.upper()}: Δ {title.lower()}"


def _data_and_backbone(sweeps: list[Sweep]) -> str:
    """What the figure measured: the data (tf_flowers or the source folder's name) and ResNet50's weights."""

    def names(param: str) -> list[str]:
        found = []
        for sweep in sweeps:
            value = sweep.config.get(param)
            for item in value if isinstance(value, list) else [value]:
                found.append(str(item))
        return list(dict.fromkeys(found))

    data = [("tf_flowers" if s == "tfds" else Path(s).name or s) for s in names("data.source")]
    weights = {"imagenet": "ImageNet weights", "none": "random init"}
    backbone = [weights.get(w.lower(), Path(w).name) for w in names("model.weights")]
    return f"{', '.join(data) or '?'}, ResNet50 ({', '.join(backbone) or '?'})"


def _on_x(values: Curve, flips: np.ndarray | None) -> Curve:
    """The curve against the realised flip rates instead of `noise`, where those are given."""
    return values if flips is None else Curve(flips, values.mean, values.std)


def _draw_variant(axis, values: Curve, name: str, colour, offset: float) -> None:
    if name.endswith("-clean"):
        _draw_control(axis, values, name, colour, "--")
        return
    # Pruned labels (noisy minus confident learning's flags): the loss's colour, dash-dotted with squares; an
    # oracle twin (the same heads chosen with the true labels) dotted with triangles, thinner.
    if name.endswith(ORACLE_SUFFIX):
        style, width, label = ":^", 1.2, f"{name} (chosen with true labels)"
    else:
        style, width, label = ("-.s" if name.endswith("-pruned") else "-o"), 1.8, name
    x = values.noise + offset
    axis.plot(x, values.mean, style, color=colour, lw=width, ms=4, label=label)
    std = np.nan_to_num(values.std)
    if np.any(std > 0):
        axis.errorbar(x, values.mean, yerr=std, fmt="none", ecolor=colour, elinewidth=1, capsize=2, alpha=0.55)


def _draw_control(axis, values: Curve, name: str, colour, style: str) -> None:
    """A control that does not depend on the noise rate: one horizontal line when every run measured the same
    value, as they do when DVC restores it from the run-cache; else the values as measured. No spread drawn:
    it is in the tables, and the controls' bands would hide the noisy lines."""
    finite = np.isfinite(values.mean)
    if not finite.any():
        return
    means = values.mean[finite]
    if np.ptp(means) == 0:
        axis.axhline(means[0], ls=style, color=colour, lw=1.2, label=name)
        return
    axis.plot(values.noise[finite], means, ls=style, marker=".", color=colour, lw=1.2, label=name)
