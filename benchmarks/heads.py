"""The train stage's head cost per repeat, untuned (one unregularised head, as before train.tune) against the
default grid (train.tune in params.yaml: 8 heads per variant trained at once, chosen on the validation
labels), side by side in one run, on the default sizes: 600 training rows, 300 validation, 2,770 test,
2,048 features, 100 epochs.

    python benchmarks/heads.py                      # the default losses (params.yaml's train.losses)
    python benchmarks/heads.py --losses bce l1 gce sce bootstrap ls forward --repeats 3
    python benchmarks/heads.py --before 4c09f07     # also the head of that commit (before train.tune), from git

Both run the same code (stages.lib.training.head_trainer, DVCLive logging replaced by a no-op): the untuned
one is the one-point grid (l2 0, train.loss_params' values), the path the grid reduces to and that a test
checks equals the head trained before grids existed. `--before <commit>` adds the head trainer as that commit
had it (its stages/lib/head.py read from git: one unregularised head, fit_linear_head as its train stage
called it, logging to a no-op). Prints per loss the median CPU seconds per repeat of
each and their ratio, then `ratio: X` over all losses. CPU time (time.process_time; the head trainer runs
one BLAS thread), not wall time: on a machine shared with other jobs wall time measures the neighbours.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.lib import params as P
from stages.lib.labels import targets
from stages.lib.params import loss_settings as L
from stages.lib.training import Setup, head_trainer, log_epoch


class NoLog:
    def log_metric(self, *_: object) -> None:
        pass

    def next_step(self) -> None:
        pass


def features(n: int, dim: int, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Non-negative, skewed features (as pooled ResNet features are) whose first 20 dims carry the label."""
    x = rng.gamma(1.0, 1.0, size=(n, dim))
    x[:, :20] += 0.6 * labels[:, None]
    return x.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    raw = P.load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    parser.add_argument("--losses", nargs="+", default=raw["train"]["losses"])
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per loss and setting")
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--val", type=int, default=300)
    parser.add_argument("--test", type=int, default=2770)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=raw["train"]["epochs"])
    parser.add_argument("--before", help="a git commit whose stages/lib/head.py to time too")
    args = parser.parse_args()
    before = old_head(args.before) if args.before else None

    raw["train"]["losses"] = args.losses
    raw["train"]["epochs"] = args.epochs
    tuned = L.train_params(raw)
    untuned = replace(tuned, grids={})
    rng = np.random.default_rng(0)
    labels = {
        split: (rng.random(n) < 0.2).astype(np.int64)
        for split, n in [("train", args.train), ("val", args.val), ("test", args.test)]
    }
    x = {split: features(len(y), args.dim, y, rng) for split, y in labels.items()}
    noisy = labels["train"].copy()
    flip = rng.choice(len(noisy), size=round(0.3 * len(noisy)), replace=False)
    noisy[flip] ^= 1
    y, val_y, test_y = (
        targets(noisy, "binary", 2),
        targets(labels["val"], "binary", 2),
        targets(labels["test"], "binary", 2),
    )
    transition = np.array([[0.7, 0.3], [0.3, 0.7]])

    totals = {"before": 0.0, "untuned": 0.0, "tuned": 0.0}
    print(
        f"{'loss':<10} {'before':>8} {'untuned':>8} {'tuned':>8} {'grid':>5} {'ratio':>6}   (CPU s per repeat, median)"
    )
    for loss in args.losses:
        times = {"before": float("nan")}
        if before is not None:
            seconds = []
            for repeat in range(args.repeats):
                start = time.process_time()
                with threadpool_limits(limits=1), contextlib.redirect_stdout(io.StringIO()):
                    before.fit_linear_head(
                        x["train"],
                        y,
                        x["test"],
                        test_y,
                        task="binary",
                        loss=loss,
                        loss_params=tuned.loss_params[loss],
                        epochs=args.epochs,
                        batch_size=tuned.batch_size,
                        learning_rate=tuned.learning_rate,
                        seed=repeat,
                        on_epoch=lambda epoch, values: log_epoch(NoLog(), epoch, args.epochs, values),
                        transition=transition if loss == "forward" else None,
                        val_features=x["val"],
                        val_y=val_y,
                        select_epoch=tuned.select_epoch,
                    )
                seconds.append(time.process_time() - start)
            times["before"] = float(np.median(seconds))
            totals["before"] += times["before"]
        for name, settings in (("untuned", untuned), ("tuned", tuned)):
            setup = Setup(
                f"{loss}-noisy",
                x["train"],
                x["val"],
                x["test"],
                test_y,
                "binary",
                2,
                loss,
                settings,
                P.ModelParams("none", 32, False, None),
                0,
            )
            trainer = head_trainer(setup)
            seconds = []
            for repeat in range(args.repeats):
                start = time.process_time()
                with contextlib.redirect_stdout(io.StringIO()):
                    trainer(y, repeat, NoLog(), transition if loss == "forward" else None, val_y)
                seconds.append(time.process_time() - start)
            times[name] = float(np.median(seconds))
            totals[name] += times[name]
        ratio = times["tuned"] / times["untuned"]
        row = f"{times['before']:>8.3f} {times['untuned']:>8.3f} {times['tuned']:>8.3f}"
        print(f"{loss:<10} {row} {len(tuned.grid(loss)):>5} {ratio:>6.2f}")
    print(f"CPU seconds per repeat, all losses: untuned {totals['untuned']:.3f}, tuned {totals['tuned']:.3f}")
    if before is not None:
        print(
            f"before ({args.before}) {totals['before']:.3f}; tuned / before: {totals['tuned'] / totals['before']:.2f}"
        )
    print(f"ratio: {totals['tuned'] / totals['untuned']:.2f}")


def old_head(commit: str) -> types.ModuleType:
    """stages/lib/head.py as it was at `commit`, as a module (it imports today's losses and metrics, which
    the grid did not change)."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{commit}:stages/lib/head.py"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    module = sys.modules[f"head_at_{commit}"] = types.ModuleType(f"head_at_{commit}")  # dataclasses look it up
    exec(compile(source, f"head.py@{commit}", "exec"), module.__dict__)
    return module


if __name__ == "__main__":
    main()
