"""The picture of the top suspected label errors: thumbnails of the training images the detect stage ranks
most suspect (data/labels/issues.csv, one seed), each with its given label, the model's label (out of sample)
and whether it was truly flipped. People judge suspected label errors faster by eye than from ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.core.io import atomic_path

COLUMNS = 8


def top_suspects(issues: pd.DataFrame, seed: int, count: int) -> pd.DataFrame:
    """The `count` highest-scoring rows of one seed, most suspect first (ties: issues.csv's rank)."""
    rows = issues[issues["seed"] == seed]
    return rows.sort_values(["score", "rank"], ascending=[False, True], kind="stable").head(count)


def draw_label_issues(
    images: np.ndarray, train_ids: np.ndarray, suspects: pd.DataFrame, names: list[str], path: Path | str
) -> None:
    """A grid of thumbnails; `images` are the training pool's images in the order of `train_ids`."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    position = {int(identifier): row for row, identifier in enumerate(train_ids)}
    rows = max(1, -(-len(suspects) // COLUMNS))
    figure, axes = plt.subplots(rows, COLUMNS, figsize=(1.9 * COLUMNS, 2.25 * rows + 0.6), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (rank, suspect) in zip(axes.flat, enumerate(suspects.itertuples(index=False), start=1), strict=False):
        image = np.asarray(images[position[int(suspect.id)]])
        axis.imshow(image.squeeze(), cmap="gray" if image.ndim == 2 or image.shape[-1] == 1 else None)
        flipped = bool(suspect.flipped)
        colour = "tab:red" if flipped else "0.3"
        given, model = names[int(suspect.label)], names[int(suspect.predicted)]
        axis.set_title(
            f"#{rank} score {suspect.score:.3f}\ngiven {given}, model {model}"
            f"\n{'truly flipped' if flipped else 'not flipped'}",
            fontsize=7,
            color=colour,
        )
    hits = int(suspects["flipped"].sum())
    figure.suptitle(
        f"Top {len(suspects)} suspected label errors (confident learning); red: truly flipped, "
        f"{hits} of {len(suspects)}",
        fontsize=10,
    )
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
