"""Kill `dvc repro` while a stage is midway (Ctrl-C, or SIGKILL as the OOM killer sends): no output of
that stage may look complete, and a second `dvc repro` must finish the job and leave `dvc status` clean.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from toolkit.project import dvc, make_project, ran_stages, run, status_is_clean, tool_env

# One loss (two train stages) and three seeds: a train stage has two seeds left to train when caught.
PARAMS = {"train": {"losses": ["bce"], "seeds": [0, 1, 2]}}
# A head trains in milliseconds; 400 epochs (about a second a seed here) leave time to catch one midway. Six
# seeds: a variant's seeds train on every core at once (two here), so when the first model is staged at
# least two rounds of seeds are left (three seeds left a window too short to catch on a loaded machine).
SLOW_SEEDS = [0, 1, 2, 3, 4, 5]
SLOW_TRAIN = {"train": {"losses": ["bce"], "seeds": SLOW_SEEDS, "epochs": 400}}
FEATURES = ("data/features/train.npy", "data/features/val.npy", "data/features/test.npy")


def first_model_staged(repo: Path) -> Callable[[], bool]:
    """train@bce-clean has saved its first seed's model in its staging folder and trains the next."""
    return lambda: any(repo.glob("models/.bce-clean.*.tmp/seed_0.npz"))


def embedding_started(log: Path) -> Callable[[], bool]:
    """The embed stage has built the backbone and started its first batch (its progress bar is up)."""
    return lambda: "embed train:" in log.read_text(errors="replace")


def interrupt_repro(repo: Path, sig: signal.Signals, midway: Callable[[Path, Path], Callable[[], bool]]) -> str:
    """Start `dvc repro` in its own process group; once `midway` holds, send `sig` to the whole group
    (dvc, the shell and the stage: what Ctrl-C in a terminal does). Returns everything it printed."""
    log = repo.parent / "repro.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro"],
            cwd=repo,
            env=tool_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        caught = midway(repo, log)
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            if caught():
                os.killpg(process.pid, sig)
                break
            time.sleep(0.02)
        else:
            process.kill()
            pytest.fail(f"dvc repro was not caught midway:\n{log.read_text()}")
        process.wait(timeout=120)
    assert process.returncode != 0, log.read_text(errors="replace")
    return log.read_text(errors="replace")


def leftovers(repo: Path) -> list[Path]:
    return [path for path in repo.rglob("*.tmp") if ".dvc" not in path.relative_to(repo).parts]


def finish_and_check(repo: Path, killed_stage: str, must_not_rerun: set[str]) -> None:
    """`dvc status` knows the killed stage is not done; `dvc repro` then finishes and leaves all clean."""
    assert killed_stage in dvc(repo, "status").stdout
    result = dvc(repo, "repro")
    ran = ran_stages(result.stdout + result.stderr)
    assert killed_stage in ran and not ran & must_not_rerun, ran
    assert status_is_clean(repo)
    assert (repo / "metrics/metrics.json").exists()
    assert not leftovers(repo)
    assert ".tmp" not in run(repo, "git", "status", "--porcelain", "--untracked-files=all").stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_kill_during_train(tmp_path: Path, flower_folder: Path, sig: signal.Signals) -> None:
    repo = make_project(tmp_path / "project", flower_folder, SLOW_TRAIN)
    output = interrupt_repro(repo, sig, lambda repo, log: first_model_staged(repo))
    # The model folder appears only complete; the first seed's model never reached it.
    assert not (repo / "models/bce-clean").exists()
    if sig == signal.SIGINT:
        assert "train: interrupted; no output was completed" in output
        assert not leftovers(repo)  # the stage cleaned up its staging folder itself
    finish_and_check(repo, "train@bce-clean", must_not_rerun={"download", "subsample", "corrupt", "embed"})
    models = sorted(p.name for p in (repo / "models/bce-clean").glob("seed_*.npz"))
    assert models == [f"seed_{s}.npz" for s in SLOW_SEEDS]


def test_sigkill_during_embed(tmp_path: Path, flower_folder: Path) -> None:
    repo = make_project(tmp_path / "project", flower_folder, PARAMS)
    interrupt_repro(repo, signal.SIGKILL, lambda repo, log: embedding_started(log))
    assert not [path for path in FEATURES if (repo / path).exists()]
    finish_and_check(repo, "embed", must_not_rerun={"download", "subsample", "corrupt"})
