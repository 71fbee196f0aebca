"""The train stage's head cost per repeat: today's head trainer against the one of an earlier commit, side by
side in one run, and the optimiser against scipy's L-BFGS-B on the same objective.

    python benchmarks/heads.py --before 466cfa3        # the default losses (params.yaml's train.losses)
    python benchmarks/heads.py --before 466cfa3 --losses bce l1 gce sce bootstrap ls forward --repeats 3

Both trainers run on the same synthetic problem of the default sizes (600 training rows with 30 % of their
labels flipped, 300 validation, 2,770 test, 2,048 features) with their own params.yaml's defaults (their grid,
their selection); each in its own process, the earlier commit's `stages/` exported from git, one BLAS thread,
DVCLive logging replaced by a no-op. Printed per loss: the median CPU seconds per repeat of each and their
ratio; then `ratio: X` over all losses. Then one cross-entropy head at λ 0.1, fit by stages.lib.train.head's
optimiser (L-BFGS-B) and by CG to the same gradient tolerance: CPU seconds, iterations and the objective each
reached (`--project`: on a project's own features and noisy labels instead). CPU time (time.process_time),
not wall time: on a machine shared with other jobs wall time measures the neighbours.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Run in a project tree (today's or an exported commit's): times its head trainer per loss; prints JSON.
HARNESS = """
import contextlib, io, json, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
from stages.lib.core import params as core_params
from stages.lib.losses import settings as loss_settings
from stages.lib.train.head_trainer import HeadTrainer
from stages.lib.train.interface import SeedTargets, Setup

class NoLog:
    def log_metric(self, *_): pass
    def next_step(self): pass

data = np.load(sys.argv[1])
losses, repeats = sys.argv[2].split(","), int(sys.argv[3])
from pathlib import Path
raw = core_params.load_params(Path("params.yaml"))
raw["train"]["losses"] = losses
settings = loss_settings.train_params(raw)
transition = np.array([[0.7, 0.3], [0.3, 0.7]])
out = {}
for loss in losses:
    setup = Setup(f"{loss}-noisy", data["x_train"], data["x_val"], data["x_test"], data["test_y"], "binary", 2, loss,
                  settings, core_params.model_params(raw), 0, core_params.evaluate_metric(raw))
    seconds = []
    for repeat in range(repeats):
        start = time.process_time()
        quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
        with threadpool_limits(limits=1), quiet[0], quiet[1]:
            trainer = HeadTrainer(setup)
            forward = transition if loss == "forward" else None
            trainer.fit(SeedTargets(data["y"], repeat, data["val_y"], forward), NoLog())
        seconds.append(time.process_time() - start)
    out[loss] = {"seconds": float(np.median(seconds)), "grid": len(settings.grid(loss))}
print(json.dumps(out))
"""


def problem(path: Path, n_train: int, n_val: int, n_test: int, dim: int) -> None:
    """The synthetic features and labels, saved for both trees."""
    rng = np.random.default_rng(0)
    labels = {
        split: (rng.random(n) < 0.2).astype(np.int64)
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test))
    }

    def features(y: np.ndarray) -> np.ndarray:
        x = rng.gamma(1.0, 1.0, size=(len(y), dim))
        x[:, :20] += 0.6 * y[:, None]
        return x.astype(np.float32)

    x = {split: features(y) for split, y in labels.items()}
    noisy = labels["train"].copy()
    noisy[rng.choice(n_train, size=round(0.3 * n_train), replace=False)] ^= 1
    val_noisy = labels["val"].copy()
    val_noisy[rng.choice(n_val, size=round(0.3 * n_val), replace=False)] ^= 1
    np.savez(
        path,
        x_train=x["train"],
        x_val=x["val"],
        x_test=x["test"],
        y=noisy.astype(np.float32)[:, None],
        val_y=val_noisy.astype(np.float32)[:, None],
        test_y=labels["test"].astype(np.float32)[:, None],
    )


def timed(tree: Path, data: Path, losses: list[str], repeats: int) -> dict:
    command = [sys.executable, "-c", HARNESS, str(data), ",".join(losses), str(repeats)]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"heads.py: timing in {tree} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def exported(commit: str, destination: Path) -> Path:
    """The commit's stages/ and params.yaml in `destination`."""
    destination.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", commit, "stages", "params.yaml"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)
    return destination


def project_problem(project: Path) -> tuple[np.ndarray, np.ndarray]:
    """A project's training features (after `dvc repro embed`) and its first seed's noisy training labels."""
    import pandas as pd

    table = pd.read_csv(project / "data/prepared/labels.csv")
    ids = table.loc[table["split"] == "train", "id"].to_numpy()
    noisy = pd.read_csv(project / "data/labels/noisy.csv")
    noisy = noisy[(noisy["seed"] == noisy["seed"].min()) & noisy["id"].isin(ids)].set_index("id")
    return np.load(project / "data/features/train.npy"), noisy.loc[ids, "label"].to_numpy(np.float64)[:, None]


def methods(features: np.ndarray, y: np.ndarray) -> None:
    """One cross-entropy head at λ 0.1 by stages.lib.train.head's optimiser and by CG, to the same tolerance."""
    from scipy import optimize
    from threadpoolctl import threadpool_limits

    from stages.lib.losses import logit_gradient, make_loss
    from stages.lib.train import head

    coordinates = head.Coordinates.of(features)
    x, y = coordinates(features), y.astype(np.float64)
    function = head.objective(
        x,
        y,
        make_loss("bce", "binary", backend="numpy", dtype="float64"),
        logit_gradient("bce", "binary", dtype="float64"),
        0.1,
    )
    start = np.concatenate([np.zeros(x.shape[1]), head.prior_log_odds(y)])
    options = {
        head.METHOD: {"gtol": head.GRADIENT_TOLERANCE, "maxiter": head.MAX_ITERATIONS, **head.METHOD_OPTIONS},
        "CG": {"gtol": head.GRADIENT_TOLERANCE, "maxiter": head.MAX_ITERATIONS},
    }
    print(f"\none cross-entropy head, λ 0.1, {x.shape[1]} coordinates, to |gradient|∞ <= {head.GRADIENT_TOLERANCE:g}:")
    with threadpool_limits(limits=1):
        for method, settings in options.items():
            seconds = []
            for _ in range(3):
                began = time.process_time()
                result = optimize.minimize(function, start, jac=True, method=method, options=settings)
                seconds.append(time.process_time() - began)
            largest = np.abs(function(result.x)[1]).max()
            print(
                f"  {method:<9} {np.median(seconds):.3f} CPU s, {result.nit} iterations, objective {result.fun:.10f}, "
                f"|gradient|∞ {largest:.1e}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", nargs="+", default=None, help="default: params.yaml's train.losses")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per loss")
    parser.add_argument("--before", required=True, help="the git commit whose head trainer to time beside today's")
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--val", type=int, default=300)
    parser.add_argument("--test", type=int, default=2770)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--project", type=Path, help="the optimisers on this project's features (after embed)")
    args = parser.parse_args()
    import yaml

    losses = args.losses or yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["losses"]
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "problem.npz"
        problem(data, args.train, args.val, args.test, args.dim)
        old_tree = exported(args.before, Path(folder) / "before")
        before = timed(old_tree, data, losses, args.repeats)
        now = timed(ROOT, data, losses, args.repeats)
        print(f"{'loss':<10} {'before':>8} {'now':>8} {'ratio':>6}   (CPU s per repeat, median; grid before/now)")
        for loss in losses:
            ratio = now[loss]["seconds"] / before[loss]["seconds"]
            grids = f"{before[loss]['grid']}/{now[loss]['grid']}"
            print(f"{loss:<10} {before[loss]['seconds']:>8.3f} {now[loss]['seconds']:>8.3f} {ratio:>6.2f}   {grids}")
        total_before = sum(before[loss]["seconds"] for loss in losses)
        total_now = sum(now[loss]["seconds"] for loss in losses)
        print(f"CPU seconds per repeat, all losses: before ({args.before}) {total_before:.3f}, now {total_now:.3f}")
        print(f"ratio: {total_now / total_before:.2f}")
        sys.path.insert(0, str(ROOT))
        saved = np.load(data)
        methods(*(project_problem(args.project) if args.project else (saved["x_train"], saved["y"])))


if __name__ == "__main__":
    main()
