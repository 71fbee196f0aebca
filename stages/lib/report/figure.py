"""The noise-curve figure: accuracy and balanced accuracy against the noise rate, per loss, per sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.lib.io import atomic_path
from stages.lib.labels import BASELINE, parse_variant
from stages.lib.report.sweep import (
    METRIC_TITLES,
    Curve,
    Sweep,
    curve,
    distinguishing_params,
    realised_flip_rates,
    variants,
)
from stages.lib.report.tables import sweep_title

NOISE_LABEL = "noise rate (fraction of training labels flipped)"
FLIP_LABEL = "realised flip rate (fraction of training labels changed, mean over seeds)"

FIGURE_METRICS = ("accuracy", "balanced_accuracy")
BASELINE_COLOUR = "0.35"


def _loss_of(variant: str) -> str:
    return parse_variant(variant)[0]


def _binary_flip(sweep: Sweep) -> bool:
    """Binary labels flipped at the noise rate: at 0.5 they carry no information, above it they invert."""
    return sweep.config.get("task") == "binary" and sweep.config.get("noise_type") == "symmetric"


def draw_noise_curves(sweeps: list[Sweep], path: Path | str) -> None:
    """One row of panels per sweep (one panel per metric); lines are means over seeds, bands ± 1 std."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    distinct = distinguishing_params(sweeps)
    figure, axes = plt.subplots(
        len(sweeps), len(FIGURE_METRICS), figsize=(6.2 * len(FIGURE_METRICS), 4.6 * len(sweeps)), squeeze=False
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
    for row, sweep in enumerate(sweeps):
        names, flips = variants(sweep), flip_rates[row]
        for column, metric in enumerate(FIGURE_METRICS):
            axis = axes[row][column]
            for name in names:
                _draw_variant(axis, _on_x(curve(sweep, name, metric), flips), name, colours[_loss_of(name)])
            baseline = _on_x(curve(sweep, BASELINE, metric), flips)
            _draw_control(axis, baseline, "majority baseline", BASELINE_COLOUR, ":")
            if _binary_flip(sweep):
                axis.axvline(0.5, color="0.75", lw=1, zorder=0)
                axis.annotate(
                    "labels carry no information",
                    (0.5, 1),
                    xycoords=("data", "axes fraction"),
                    xytext=(3, -3),
                    textcoords="offset points",
                    va="top",
                    fontsize=7,
                    color="0.45",
                )
            axis.set_xlabel(NOISE_LABEL if flips is None else FLIP_LABEL)
            axis.set_ylabel(METRIC_TITLES[metric] + " (test set, true labels)")
            axis.set_xlim(low - 0.02, high + 0.02)
            axis.grid(alpha=0.3)
            title = METRIC_TITLES[metric]
            if len(sweeps) > 1:
                title = f"{sweep_title(row, distinct[row], len(sweeps), markdown=False)}\n{title}"
            axis.set_title(title, fontsize=10)
    # One legend for the figure, below the panels: the union of every panel's lines.
    legend = {}
    for axis in axes.flat:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    figure.legend(legend.values(), legend.keys(), loc="lower center", ncol=min(len(legend), 6), fontsize=9)
    seeds = max(sweep.seeds for sweep in sweeps)
    band = f"bands: ± 1 standard deviation over {seeds} seeds" if seeds > 1 else "one seed: no bands"
    pruned = ", dash-dot: pruned" if any(name.endswith("-pruned") for name in legend) else ""
    figure.suptitle(
        f"Label noise vs. loss on {_data_and_backbone(sweeps)} — solid: noisy labels{pruned}, dashed: "
        f"clean-label controls; {band}",
        fontsize=11,
    )
    legend_rows = -(-len(legend) // 6)
    figure.tight_layout(rect=(0, 0.05 * legend_rows / len(sweeps) + 0.02, 1, 1))
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=130)
    plt.close(figure)


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


def _draw_variant(axis, values: Curve, name: str, colour) -> None:
    if name.endswith("-clean"):
        _draw_control(axis, values, name, colour, "--")
        return
    # Pruned labels (noisy minus confident learning's flags): the loss's colour, dash-dotted with squares.
    style = "-.s" if name.endswith("-pruned") else "-o"
    axis.plot(values.noise, values.mean, style, color=colour, lw=2, ms=4, label=name)
    std = np.nan_to_num(values.std)
    if np.any(std > 0):
        axis.fill_between(values.noise, values.mean - std, values.mean + std, color=colour, alpha=0.2)


def _draw_control(axis, values: Curve, name: str, colour, style: str) -> None:
    """A control that does not depend on the noise rate: one horizontal line (and band) when every run
    measured the same value, as they do when DVC restores it from the run-cache; else the values as measured."""
    finite = np.isfinite(values.mean)
    if not finite.any():
        return
    means, stds = values.mean[finite], np.nan_to_num(values.std[finite])
    if np.ptp(means) == 0 and np.ptp(stds) == 0:
        axis.axhline(means[0], ls=style, color=colour, lw=1.5, label=name)
        if stds[0] > 0:
            axis.axhspan(means[0] - stds[0], means[0] + stds[0], color=colour, alpha=0.08, lw=0)
        return
    axis.plot(values.noise[finite], means, ls=style, marker=".", color=colour, lw=1.5, label=name)
    if np.any(stds > 0):
        axis.fill_between(values.noise[finite], means - stds, means + stds, color=colour, alpha=0.08, lw=0)
