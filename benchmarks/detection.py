"""How far the detect stage's noise estimate is from the realised noise on real features, and why.

For each positive class and noise level, a throw-away copy of the project (toolkit.project) runs
`dvc repro detect` on a class folder (`python scripts/digits_folder.py /abs/dir` writes one offline), binary
task, `model.weights: none`. Per seed it prints what `metrics/details/detection.json` says — the estimated noise rate
and transition matrix beside the realised ones, and the L2 strength chosen — and three diagnostics of the
out-of-fold probabilities the stage used (recomputed with the stage's own function and seeds):

* `AUC`: of the out-of-fold P(positive) against the true labels — how well they rank the true positives —
  and, after `clean`, the same from the same cross-validation fitted on the clean labels (what the features
  allow);
* `Platt`: slope and intercept of a logistic regression of the noisy labels on their logit — calibration
  against the labels the detector sees (slope 1, intercept 0: calibrated);
* `threshold`: cleanlab's confident threshold for the positive class (the mean P(positive) of the labels
  given positive), how many true negatives reach it (how many of those are labelled negative) and how many
  true positives do: those above it count as positives in the confident joint;
* `oracle`: cleanlab's estimate on the same scores calibrated with the clean labels, P(noisy = 1 | score) =
  ρ₋ + (1 − ρ₊ − ρ₋) · P(true = 1 | score) with P(true = 1 | score) by isotonic regression and ρ the realised
  rates. It uses the clean labels, so it is a diagnostic only: what the best calibration of these scores
  could give, never something the detector can do.

With `--per-l2`, also cleanlab's estimate at each strength of `detect.l2` alone (`l2 λ: rate, T's positive
row`): whether another strength than the one out-of-fold log-loss chose would do better.

    python benchmarks/detection.py /abs/path/digits                      # classes 3 and 8, noise 0.2 and 0.3, 10 seeds
    python benchmarks/detection.py /abs/path/digits --positive-classes 3 --noise-levels 0.3 --seeds 3 --per-l2

The last line is `worst: |estimated - realised noise rate| X, |estimated - realised T entry| Y`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.lib.core import params as core_params
from stages.lib.core.io import read_csv
from stages.lib.core.seeds import derived_seed
from stages.lib.core.variants import label_file, labels_for_seed
from stages.lib.noise.detection import out_of_sample_probabilities, training_pool
from stages.lib.noise.transition import estimated_transition
from toolkit.project import dvc, make_project, write_params


def platt(noisy: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of the (unpenalised) logistic regression of the noisy labels on logit(P(positive))."""
    clipped = np.clip(positive, 1e-9, 1 - 1e-9)
    logit = np.log(clipped / (1 - clipped))[:, None]
    fitted = LogisticRegression(C=1e9, max_iter=1000).fit(logit, noisy)
    return float(fitted.coef_[0, 0]), float(fitted.intercept_[0])


def oracle_estimate(noisy: np.ndarray, true: np.ndarray, positive: np.ndarray) -> tuple[float, np.ndarray]:
    """cleanlab's noise rate and T on the scores calibrated with the clean labels (a diagnostic: see the module)."""
    flips_negative = float(np.mean(noisy[true == 0] == 1))
    flips_positive = float(np.mean(noisy[true == 1] == 0))
    clean_posterior = IsotonicRegression(out_of_bounds="clip").fit(positive, true).predict(positive)
    noisy_posterior = flips_negative + (1 - flips_positive - flips_negative) * clean_posterior
    transition, rate = estimated_transition(noisy, np.c_[1 - noisy_posterior, noisy_posterior])
    return rate, transition


def positive_probability(features: np.ndarray, labels: np.ndarray, raw: dict, repeat: int, strengths) -> np.ndarray:
    """The detect stage's out-of-fold P(positive) for these labels, with its folds and seed for `repeat`."""
    return out_of_sample_probabilities(
        features,
        labels,
        num_classes=2,
        folds=core_params.detect_folds(raw),
        l2=strengths,
        seed=derived_seed(core_params.seed(raw), repeat),
    ).probabilities[:, 1]


def diagnose(repo: Path, noise: float, raw: dict, per_l2: bool) -> list[dict]:
    """Per seed: detection.json's estimate beside the realised noise, and the diagnostics of the module."""
    detection = json.loads((repo / "metrics/details/detection.json").read_text())["noisy"]["seeds"]
    strengths = core_params.detect_l2(raw)
    rows = []
    with contextlib.chdir(repo):
        pool = training_pool("binary")
        noisy_table = read_csv(label_file("noisy"))
        for repeat in core_params.train_seeds(raw):
            found = detection[str(repeat)]
            noisy = labels_for_seed(noisy_table, repeat, pool.ids, label_file("noisy"))
            positive = positive_probability(pool.features, noisy, raw, repeat, strengths)
            clean = positive_probability(pool.features, pool.true_labels, raw, repeat, strengths)
            each_l2 = {}
            for strength in strengths if per_l2 else ():
                alone = positive_probability(pool.features, noisy, raw, repeat, (strength,))
                each_l2[strength] = estimated_transition(noisy, np.c_[1 - alone, alone])
            slope, intercept = platt(noisy, positive)
            threshold = float(positive[noisy == 1].mean())
            above = positive >= threshold
            negative = pool.true_labels == 0
            oracle_rate, oracle_transition = oracle_estimate(noisy, pool.true_labels, positive)
            rows.append(
                {
                    "seed": repeat,
                    "noise": noise,
                    "estimated": found["estimated_noise_rate"],
                    "realised": found["realised_noise_rate"],
                    "estimated_T": np.array(found["estimated_transition_matrix"]),
                    "realised_T": np.array(found["realised_transition_matrix"]),
                    "l2": found["model"]["l2"],
                    "auc": float(roc_auc_score(pool.true_labels, positive)),
                    "clean_auc": float(roc_auc_score(pool.true_labels, clean)),
                    "each_l2": each_l2,
                    "slope": slope,
                    "threshold": threshold,
                    "negatives_above": int((above & negative).sum()),
                    "labelled_negative_above": int((above & negative & (noisy == 0)).sum()),
                    "positives_above": int((above & ~negative).sum()),
                    "intercept": intercept,
                    "oracle": oracle_rate,
                    "oracle_T": oracle_transition,
                }
            )
    return rows


def line(positive_class: str, row: dict) -> str:
    est, real, oracle = row["estimated_T"], row["realised_T"], row["oracle_T"]
    return (
        f"class {positive_class} noise {row['noise']} seed {row['seed']}: estimated {row['estimated']:.3f} realised "
        f"{row['realised']:.3f} (error {row['estimated'] - row['realised']:+.3f}); T negative row "
        f"{est[0, 1]:.3f} / {real[0, 1]:.3f}, positive row {est[1, 0]:.3f} / {real[1, 0]:.3f} (P(flip), estimated / "
        f"realised); l2 {row['l2']:g}; AUC {row['auc']:.3f} (clean {row['clean_auc']:.3f}); "
        f"Platt {row['slope']:.2f} {row['intercept']:+.2f}; threshold {row['threshold']:.3f}: "
        f"{row['negatives_above']} negatives ({row['labelled_negative_above']} labelled negative), "
        f"{row['positives_above']} positives; "
        f"oracle {row['oracle']:.3f} (T rows {oracle[0, 1]:.3f}, {oracle[1, 0]:.3f})"
    ) + "".join(
        f"\n  l2 {strength:g}: {rate:.3f}, {transition[1, 0]:.3f}"
        for strength, (transition, rate) in row["each_l2"].items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a class folder (ROOT/<class>/<image>), absolute")
    parser.add_argument("--positive-classes", nargs="+", default=["3", "8"])
    parser.add_argument("--noise-levels", nargs="+", type=float, default=[0.2, 0.3])
    parser.add_argument("--seeds", type=int, default=10, help="train.seeds: 0 .. N-1")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=600)
    parser.add_argument("--val-size", type=int, default=300)
    parser.add_argument("--per-l2", action="store_true", help="also the estimate at each strength of detect.l2 alone")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the projects go (default: a temporary folder)"
    )
    args = parser.parse_args()
    if not args.source.is_absolute() or not args.source.is_dir():
        parser.error(f"{args.source}: give the absolute path of a class folder")
    print(
        f"benchmark: {args.source}, {args.train_size} training / {args.val_size} validation images at "
        f"{args.image_size} px, weights none, seeds 0-{args.seeds - 1}, symmetric noise {args.noise_levels}"
    )
    errors, entry_errors = [], []
    with tempfile.TemporaryDirectory() as temporary:
        workdir = args.workdir or Path(temporary)
        for positive_class in args.positive_classes:
            params = {
                "task": "binary",
                "noise_type": "symmetric",
                "data": {
                    "positive_class": positive_class,
                    "image_size": args.image_size,
                    "train_size": args.train_size,
                    "val_size": args.val_size,
                },
                "model": {"weights": "none"},
                "train": {"seeds": list(range(args.seeds))},
            }
            repo = make_project(workdir / f"class-{positive_class}", args.source, params)
            for noise in args.noise_levels:
                write_params(repo, {"noise": noise})
                dvc(repo, "repro", "detect")
                with contextlib.chdir(repo):
                    raw = core_params.load_checked_params()
                for row in diagnose(repo, noise, raw, args.per_l2):
                    print(line(positive_class, row), flush=True)
                    errors.append(abs(row["estimated"] - row["realised"]))
                    entry_errors.append(float(np.abs(row["estimated_T"] - row["realised_T"]).max()))
    print(
        f"worst: |estimated - realised noise rate| {max(errors):.3f}, "
        f"|estimated - realised T entry| {max(entry_errors):.3f}"
    )


if __name__ == "__main__":
    main()
