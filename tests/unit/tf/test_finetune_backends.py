"""JAX and TensorFlow fine-tune the same weights to the same numbers (benchmarks/backends.py, at 32 px).

Tolerance: logits within 1e-4 of the largest one, before and after two epochs of SGD — float32 rounding
through 50 layers (measured here: 7.5e-6 before, 7.4e-6 after), while training itself moves them by 2.6e-3.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from toolkit.project import PROJECT_ROOT, tool_env

pytest.importorskip("jax", reason="the JAX backend is not installed (requirements-dev.txt pins it)")
TOLERANCE = 1e-4


def test_jax_and_tensorflow_agree_from_the_same_weights() -> None:
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks/backends.py"), "--images=16", "--batch-size=8"]
    command += ["--epochs=2", "--blocks=1", "--runs=tensorflow:off,jax:on"]
    result = subprocess.run(command, env=tool_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    moved = float(re.search(r"^logit_change_by_training tensorflow xla=off: (\S+)$", result.stdout, re.M)[1])
    before, after = map(
        float, re.search(r"^logit_difference jax xla=on: before (\S+) after (\S+)$", result.stdout, re.M).groups()
    )
    assert before < TOLERANCE and after < TOLERANCE
    assert moved > 10 * TOLERANCE  # training changed the logits far more than the backends differ
    assert re.search(r"^step_time_ratio jax/tensorflow xla=off: \d+\.\d\d$", result.stdout, re.M)
