"""Kill `dvc repro` while a stage is midway (Ctrl-C, or SIGKILL as the OOM killer sends): no output of
that stage may look complete, and a second `dvc repro` must finish the job and leave `dvc status` clean.

The stage is caught at a line it prints itself (tests/hold_at_line holds it right there until the signal
comes): train after its first seed's model is staged and while the second is not, embed after the training
images' features are computed and while the validation images' are not. No timing is guessed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit.project import PROJECT_ROOT, dvc, ran_stages, run, status_is_clean, tool_env, write_params

HOLD_HOOK = PROJECT_ROOT / "tests/hold_at_line"
# The train stage prints one line per seed, in seed order, before it stages that seed's model: at seed 1's
# line, seed 0's model is in the staging folder and seed 1's is not.
SECOND_SEED_LINE = "train bce-clean: seed 1: "
# The embed stage's progress bar for the validation images: the training images' features are computed.
EMBEDDING_VAL = "embed val:"
FEATURES = ("data/features/train.npy", "data/features/val.npy", "data/features/test.npy")
WAIT_S = 300  # for the line: the stages before it run first
EXIT_WAIT_S = 120  # for dvc repro to end after the signal (seconds, even on a loaded machine)
ONE_LOSS = {"train": {"losses": ["bce"]}}  # two train stages: fewer to finish after the kill


def default_sigint() -> None:
    """Ctrl-C's default action in the child, as a terminal gives it: a test run started in the background by a
    non-interactive shell (`.ci/run &`) inherits SIGINT ignored, and so would dvc and the stage, which then
    slept on after the signal (seen in CI: the `ps` of the failure message below)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_repro(repo: Path, sig: signal.Signals, line: str) -> str:
    """Start `dvc repro` in its own process group, with the stage that prints `line` held there; once the line
    is out, send `sig` to the whole group (dvc, the shell and the stage: what Ctrl-C in a terminal does).
    Returns everything it printed."""
    log = repo.parent / "repro.log"
    env = {**tool_env(), "PYTHONPATH": str(HOLD_HOOK), "HOLD_AT_LINE": line}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro"],
            cwd=repo,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_sigint,
        )
        try:
            deadline = time.monotonic() + WAIT_S
            while line not in log.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"dvc repro ended or hung before the stage printed {line!r}:\n{log.read_text()}")
                time.sleep(0.05)
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout=EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                # What is still alive in its session, and what it printed: the evidence for a hang.
                alive = run(repo, "ps", "-o", "pid,stat,etime,time,args", "--sid", str(process.pid), check=False).stdout
                pytest.fail(f"dvc repro still runs {EXIT_WAIT_S} s after {sig.name}:\n{alive}\n{log.read_text()}")
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
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
    assert ".tmp" not in run(repo, "git", "status", "--untracked-files=all", "--porcelain").stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_kill_during_train(prepared_copy: Path, sig: signal.Signals) -> None:
    repo = prepared_copy
    write_params(repo, ONE_LOSS)
    output = interrupt_repro(repo, sig, SECOND_SEED_LINE)
    # The model folder appears only complete; the first seed's model never reached it.
    assert not (repo / "models/bce-clean").exists()
    staged = [path for path in leftovers(repo) if path.name.startswith(".bce-clean.")]
    if sig == signal.SIGINT:
        assert "train: interrupted; no output was completed" in output
        assert not staged  # the stage cleaned up its staging folder itself
    else:  # killed outright: the staging folder stays behind, with the first seed's model only
        (folder,) = staged
        assert (folder / "seed_0.npz").exists() and not (folder / "seed_1.npz").exists()
    finish_and_check(repo, "train@bce-clean", must_not_rerun={"download", "subsample", "corrupt", "embed"})
    assert sorted(p.name for p in (repo / "models/bce-clean").glob("seed_*.npz")) == ["seed_0.npz", "seed_1.npz"]


def test_sigkill_during_embed(prepared_copy: Path) -> None:
    repo = prepared_copy
    write_params(repo, {"model": {"embed_batch_size": 16}, **ONE_LOSS})  # an embed param: embed must run again
    interrupt_repro(repo, signal.SIGKILL, EMBEDDING_VAL)
    # DVC removed the earlier features before starting the stage, and the stage wrote none.
    assert not [path for path in FEATURES if (repo / path).exists()]
    finish_and_check(repo, "embed", must_not_rerun={"download", "subsample", "corrupt"})
