"""Which rule should choose a head and its threshold on noisy validation labels? Simulated on a project's own
features, never on its test set.

The study's defaults `train.select_by` and `train.threshold` (stages.lib.train.selection) were chosen with this
script. It reads a project in which `dvc repro embed` has run (its data/features and data/prepared/labels.csv)
and uses only the training pool and the validation set: the test images are not read. Each draw splits
those images, stratified and seeded, into a simulated training pool, validation set and hold-out set
(`--fractions`), corrupts the training and validation labels with the project's own noise model
(stages.lib.noise.models.corrupt_labels, symmetric, exact per class) at each `--noise` level, fits each loss's grid
of heads (params.yaml's train.tune; stages.lib.train.head) once, and lets every rule choose a head and a threshold
on the noisy validation labels (for the heads chosen by log-loss also on those pooled with the training
pool's out-of-fold logits, train.threshold_folds, and the smoothed rule at several bandwidths). A rule is
scored by the verdict metric (`evaluate.metric`) of what it chose, on the hold-out set's true labels.
Printed: per noise level, loss and rule the mean and standard deviation over draws; then per rule the mean
over every level and loss, and `best: <select_by> <threshold>`. (The first part's `smoothed` rows use
stages.lib.train.selection.BANDWIDTH.)

    python benchmarks/selection.py /path/to/project                   # 20 draws, noise 0.2 and 0.3
    python benchmarks/selection.py /path/to/project --draws 5 --noise 0.3 --losses bce
"""

from __future__ import annotations

import argparse
import itertools
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.lib.core.params.train import SELECT_BY, THRESHOLD_RULES
from stages.lib.core.seeds import derived_seed
from stages.lib.core.variants import targets
from stages.lib.data.split import stratified_split
from stages.lib.evaluate.metrics import binary_metrics
from stages.lib.losses import settings as loss_settings
from stages.lib.noise.models import corrupt_labels
from stages.lib.train.head import fit_head_grid, out_of_fold_logits
from stages.lib.train.selection import select, smoothed_threshold_scores, thresholds_and_metric

# First what ranks the heads, each with every threshold rule on the validation labels alone; then, for the
# heads the first ranks by log-loss, where the threshold goes: each rule on the validation labels alone or
# pooled with the training pool's 5-fold out-of-fold logits, the smoothed one at several bandwidths.
RULES = tuple(itertools.product(SELECT_BY, THRESHOLD_RULES))
POOLED_FOLDS = 5
BANDWIDTHS = (1.0, 2.0, 3.0)


def pool(project: Path) -> tuple[np.ndarray, np.ndarray]:
    """The project's training pool and validation set: features and true binary labels (the test set is not
    read)."""
    table = pd.read_csv(project / "data/prepared/labels.csv")
    rows = [table[table["split"] == split] for split in ("train", "val")]
    features = np.concatenate([np.load(project / f"data/features/{split}.npy") for split in ("train", "val")])
    labels = np.concatenate([frame["label"].to_numpy() for frame in rows])
    if labels.max() > 1:
        raise SystemExit(f"{project}: the binary task only (task: binary)")
    return features, labels.astype(np.int64)


def one_draw(job: tuple) -> list[dict]:
    """Every rule's hold-out score for one split, noise level and loss."""
    from threadpoolctl import threadpool_limits

    features, labels, fractions, noise, loss, grid, metric, draw = job
    threadpool_limits(1)  # one process per core
    n = len(labels)
    train, val, hold_out = stratified_split(
        [str(v) for v in labels], round(fractions[0] * n), None, seed=draw, val_size=round(fractions[1] * n)
    )
    rng = np.random.default_rng(derived_seed(draw, round(noise * 1000)))
    noisy_train, noisy_val = (corrupt_labels(labels[rows], 2, noise, "symmetric", rng) for rows in (train, val))
    heads = fit_head_grid(features[train], targets(noisy_train, "binary", 2), task="binary", loss=loss, grid=grid)
    val_logits = heads.logits(features[val])[..., 0]
    hold_out_logits = heads.logits(features[hold_out])[..., 0]
    out = []

    def add(select_by: str, rule: str, point: int, threshold: float) -> None:
        probability = 1.0 / (1.0 + np.exp(-hold_out_logits[:, point]))
        score = binary_metrics(labels[hold_out], probability, threshold)[metric]
        out.append(
            {"noise": noise, "loss": loss, "select_by": select_by, "threshold": rule, "draw": draw, "score": score}
        )

    common = dict(task="binary", metric=metric, transition=None)
    for select_by, rule in RULES:
        chosen = select(val_logits[:, None], noisy_val, select_by=select_by, threshold_rule=rule, **common)
        add(select_by, rule, chosen.point, chosen.threshold)
    point = select(val_logits[:, None], noisy_val, select_by="log_loss", threshold_rule="share", **common).point
    y = targets(noisy_train, "binary", 2)
    train_x = heads.coordinates(features[train])
    oof = out_of_fold_logits(train_x, y, task="binary", loss=loss, point=grid[point], folds=POOLED_FOLDS)
    for pooled in (False, True):
        logits = np.concatenate([oof[:, 0], val_logits[:, point]]) if pooled else val_logits[:, point]
        given = np.concatenate([noisy_train, noisy_val]) if pooled else noisy_val
        where = f" +{POOLED_FOLDS}-fold" if pooled else ""
        for bandwidth in BANDWIDTHS:
            _, (threshold,) = smoothed_threshold_scores(logits[:, None], given, metric, None, bandwidth)
            add("log_loss", f"smoothed x{bandwidth:g}{where}", point, threshold)
        for rule in ("empirical", "share"):
            _, (threshold,) = thresholds_and_metric(logits[:, None], given, "binary", metric, rule, None)
            add("log_loss", f"{rule}{where}", point, threshold)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="a project folder after `dvc repro embed`")
    parser.add_argument("--draws", type=int, default=20, help="splits per noise level (default 20)")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.2, 0.3], help="noise levels (default 0.2 0.3)")
    parser.add_argument("--losses", nargs="+", default=None, help="default: the project's train.losses")
    parser.add_argument(
        "--fractions",
        type=float,
        nargs=2,
        default=[4 / 9, 2 / 9],
        help="training and validation shares (the rest: hold-out)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--save", type=Path, default=None, help="write every draw's scores to this CSV")
    args = parser.parse_args(argv)

    raw = yaml.safe_load((args.project / "params.yaml").read_text())
    settings = loss_settings.train_params(raw)
    metric = (raw.get("evaluate") or {}).get("metric", "balanced_accuracy")
    features, labels = pool(args.project)
    losses = args.losses or list(settings.losses)
    jobs = [
        (features, labels, tuple(args.fractions), noise, loss, settings.grid(loss), metric, draw)
        for noise in args.noise
        for loss in losses
        for draw in range(args.draws)
    ]
    print(
        f"selection: {len(labels)} images of {args.project} (training pool and validation set; positives "
        f"{labels.mean():.3f}), {args.draws} draws x noise {args.noise} x {losses}; hold-out {metric}",
        flush=True,
    )
    with ProcessPoolExecutor(args.workers) as workers:
        rows = [row for result in workers.map(one_draw, jobs) for row in result]
    frame = pd.DataFrame(rows)
    table = frame.groupby(["noise", "loss", "select_by", "threshold"])["score"].agg(["mean", "std"])
    print(table.round(4).to_string())
    frame.to_csv(args.save, index=False) if args.save else None
    overall = (
        frame.groupby(["select_by", "threshold"])["score"].agg(["mean", "std"]).sort_values("mean", ascending=False)
    )
    print("\nover every noise level, loss and draw:")
    print(overall.round(4).to_string())
    best = overall.index[0]
    print(f"best: {best[0]} {best[1]}")


if __name__ == "__main__":
    main()
