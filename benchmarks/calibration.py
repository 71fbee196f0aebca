"""Is the comparisons' p-value right under the null, and how often does it find a real difference?
Simulated with the project's own trainer and tests, on Gaussian or on real features.

Each simulated data set is an imbalanced binary task with a training pool, a validation set and a test set
of the default sizes: either Gaussian features (19 % positives, as sunflowers in tf_flowers), or, with
`--project`, a project's real features (every image `dvc repro embed` embedded there, its task's labels),
split afresh per data set (stratified, seeded). Per repeat the training and validation labels are corrupted
with the project's own noise model (stages.lib.noise.models.corrupt_labels, symmetric, exact per class). Then:

* null: procedure A and procedure B are the same — the train stage's BCE head trainer
  (stages.lib.train.head_trainer with the params' defaults: its tuning grid, each head fit to its optimum,
  the grid point and threshold chosen on the noisy validation labels) — on disjoint repeats: A's repeat r
  and B's repeat r are independent noise draws at `--noise`, paired by r as the study pairs its variants
  (a head is a function of its labels, so the same draws would give the same models).
  stages.lib.evaluate.comparisons.compare_variants compares them; a rejection at `--alpha` is a false positive.
* alternative: B is trained on labels corrupted at `--effect-noise` instead (fewer flips: a real gain).
  The fraction of rejections is the power against that effect.

It also prints how often the test that conditions on the trained models (a paired bootstrap over test
images only, the project's old verdict) rejects the same null data sets. The last two lines are
`false_positive_rate: X (N null data sets, alpha A)` and `power: Y (...)`.

    python benchmarks/calibration.py                  # 200 null data sets on the defaults (params.yaml)
    python benchmarks/calibration.py --project /path/to/digits-project --datasets 60 --effect-datasets 60
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.lib.core import params as core_params
from stages.lib.core.seeds import derived_seed
from stages.lib.core.variants import targets
from stages.lib.data.split import stratified_split
from stages.lib.evaluate.comparisons import compare_variants
from stages.lib.losses import settings as loss_settings
from stages.lib.noise.models import corrupt_labels
from stages.lib.train.head_trainer import HeadTrainer
from stages.lib.train.interface import SeedTargets, Setup

POSITIVE_SHARE = 0.19


@dataclass(frozen=True)
class Design:
    settings: core_params.TrainParams
    model: core_params.ModelParams
    verdict_metric: str
    train_size: int
    val_size: int
    test_size: int
    features: int
    separation: float
    noise: float
    effect_noise: float
    alpha: float
    real: tuple[np.ndarray, np.ndarray] | None = None  # real features and labels (--project), else Gaussian

    @property
    def repeats(self) -> int:
        return len(self.settings.seeds)


class NoLog:
    """Where the trainer's per-step DVCLive calls go: nothing is logged in a simulation."""

    def log_metric(self, name: str, value: float) -> None:
        pass

    def next_step(self) -> None:
        pass


def real_features(project: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every image a project embedded (its training pool, validation and test sets) and its task's labels."""
    table = pd.read_csv(project / "data/prepared/labels.csv")
    splits = ("train", "val", "test")
    features = np.concatenate([np.load(project / f"data/features/{split}.npy") for split in splits])
    labels = np.concatenate([table.loc[table["split"] == split, "label"].to_numpy() for split in splits])
    if labels.max() > 1:
        raise SystemExit(f"{project}: the binary task only (task: binary)")
    return features, labels.astype(np.int64)


def draw_data(design: Design, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Features and true labels of one simulated data set, in the order training pool, validation, test:
    a fresh stratified split of the real features, or two Gaussian classes `separation` apart."""
    if design.real is not None:
        x, y = design.real
        train, val, test = stratified_split(
            [str(v) for v in y], design.train_size, design.test_size, int(rng.integers(2**31)), design.val_size
        )
        order = np.concatenate([rng.permutation(train), rng.permutation(val), rng.permutation(test)])
        return x[order], y[order]
    n = design.train_size + design.val_size + design.test_size
    y = (rng.random(n) < POSITIVE_SHARE).astype(np.int64)
    direction = rng.normal(size=design.features)
    direction /= np.linalg.norm(direction)
    x = rng.normal(size=(n, design.features)) + design.separation * y[:, None] * direction
    return x.astype(np.float32), y


def train_head(
    design: Design, x: np.ndarray, y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, test: tuple, seed: int
) -> tuple[np.ndarray, float]:
    """One repeat's BCE head, as the train stage trains and selects it: its test scores and threshold."""
    test_x, test_y = test
    setup = Setup(
        "bce-noisy",
        x,
        val_x,
        test_x,
        targets(test_y, "binary", 2),
        "binary",
        2,
        "bce",
        design.settings,
        design.model,
        seed,
        design.verdict_metric,
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        trained = HeadTrainer(setup).fit(
            SeedTargets(targets(y, "binary", 2), seed, targets(val_y, "binary", 2)), NoLog()
        )
    return trained.scores, trained.threshold


def one_dataset(args: tuple[Design, int, bool]) -> dict[str, bool | float | None]:
    """Rejections of one simulated data set: null (ours, image-only) and, if `with_effect`, the alternative."""
    design, index, with_effect = args
    rng = np.random.default_rng(derived_seed(2026, index))
    x, y = draw_data(design, rng)
    n_train, n_val = design.train_size, design.val_size
    train, val, test = slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None)
    names = ("A", "B", "B_effect") if with_effect else ("A", "B")
    scores: dict[str, list[np.ndarray]] = {name: [] for name in names}
    thresholds: dict[str, list[float]] = {name: [] for name in names}
    test_set = (x[test], y[test])

    def add(name: str, labels: np.ndarray, val_labels: np.ndarray, seed: int) -> None:
        score, threshold = train_head(design, x[train], labels, x[val], val_labels, test_set, seed)
        scores[name].append(score)
        thresholds[name].append(threshold)

    for repeat in range(design.repeats):
        for name, rate, draw in (("A", design.noise, 0), ("B", design.noise, 1), ("B_effect", design.effect_noise, 2)):
            if name in names:  # each its own noise draws: disjoint repeats
                noise_rng = np.random.default_rng(derived_seed(index, repeat, draw))
                noisy, noisy_val = (corrupt_labels(y[s], 2, rate, "symmetric", noise_rng) for s in (train, val))
                add(name, noisy, noisy_val, derived_seed(index, repeat, draw))
    pairs = [("A", name) for name in scores if name != "A"]
    results = compare_variants(
        y[test], scores, pairs, "binary", verdict_metric=design.verdict_metric, thresholds=thresholds, seed=index
    )
    null = results["B vs A"]
    verdict = null[design.verdict_metric]
    # The old verdict: only test-set sampling, the trained models held fixed (a normal interval on it).
    image_only = abs(verdict["difference"]) > 1.96 * verdict["se_models_fixed"]
    effect = results.get("B_effect vs A")
    return {
        "null": null["p_value"] < design.alpha,
        "image_only": bool(image_only),
        "effect": None if effect is None else effect["p_value"] < design.alpha,
        "effect_size": None if effect is None else effect[design.verdict_metric]["difference"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=200, help="simulated data sets (default 200)")
    parser.add_argument("--effect-datasets", type=int, default=50, help="of them, how many also test the alternative")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the defaults to simulate")
    parser.add_argument("--project", type=Path, default=None, help="real features: a project after `dvc repro embed`")
    parser.add_argument("--features", type=int, default=64, help="Gaussian feature dimension (default 64)")
    parser.add_argument("--separation", type=float, default=2.0, help="class means' distance in std units")
    parser.add_argument("--effect-noise", type=float, default=0.2, help="B's noise rate under the alternative")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=None, help="default: len(train.seeds)")
    parser.add_argument("--test-size", type=int, default=None, help="test images (default 900; real: the rest)")
    parser.add_argument("--train-size", type=int, default=None, help="default: data.train_size")
    parser.add_argument("--val-size", type=int, default=None, help="default: data.val_size")
    args = parser.parse_args(argv)
    raw = loss_settings.load_checked_params(args.params)
    settings, data, noise = loss_settings.train_params(raw), core_params.data_params(raw), core_params.noise_params(raw)
    if args.repeats:
        settings = replace(settings, seeds=tuple(range(args.repeats)))
    real = real_features(args.project) if args.project else None
    train_size, val_size = args.train_size or data.train_size, args.val_size or data.val_size
    design = Design(
        settings=settings,
        model=core_params.model_params(raw),
        verdict_metric=core_params.evaluate_metric(raw),
        train_size=train_size,
        val_size=val_size,
        test_size=args.test_size or (len(real[1]) - train_size - val_size if real else 900),
        features=args.features,
        separation=args.separation,
        noise=noise.rate,
        effect_noise=args.effect_noise,
        alpha=args.alpha,
        real=real,
    )
    grid = len(settings.grid("bce", validating=design.val_size > 0))
    features = (
        f"real features of {args.project} ({real[0].shape[1]}, positives {real[1].mean():.3f})"
        if real
        else f"Gaussian features ({design.features}, {design.separation:g} apart)"
    )
    print(
        f"design: {design.repeats} repeats, a grid of {grid} heads chosen by {settings.select_by} with the "
        f"{settings.threshold} threshold, verdict {design.verdict_metric}; {design.train_size} train, "
        f"{design.val_size} validation, {design.test_size} test; {features}; noise {design.noise:g}",
        flush=True,
    )
    jobs = [(design, index, index < args.effect_datasets) for index in range(args.datasets)]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            outcomes = list(pool.map(one_dataset, jobs))
    else:
        outcomes = [one_dataset(job) for job in jobs]
    n = len(outcomes)
    with_effect = [o for o in outcomes if o["effect"] is not None]
    image_only = sum(o["image_only"] for o in outcomes) / n
    false_positives = sum(o["null"] for o in outcomes) / n
    power = sum(o["effect"] for o in with_effect) / max(len(with_effect), 1)
    effect = float(np.mean([o["effect_size"] for o in with_effect])) if with_effect else float("nan")
    print(f"image-only bootstrap (models held fixed), null rejections: {image_only:.3f} ({n} data sets)")
    print(f"false_positive_rate: {false_positives:.3f} ({n} null data sets, alpha {design.alpha:g})")
    print(
        f"power: {power:.3f} (effect: noise {design.noise:g} -> {design.effect_noise:g}, mean Δ "
        f"{design.verdict_metric} {effect:+.3f}; {len(with_effect)} data sets, {design.repeats} repeats, "
        f"alpha {design.alpha:g})"
    )


if __name__ == "__main__":
    main()
