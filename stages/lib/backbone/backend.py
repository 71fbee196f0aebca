"""Which Keras backend runs ResNet50 (`KERAS_BACKEND`: tensorflow, the default, jax or torch), and importing it.

Keras 3 runs the same model on each. The choice is the user's environment, not a param (Keras reads it
when it is first imported): the fingerprint stage records it in data/fingerprints/backend.json, which
embed and train depend on, so switching backends reruns them. `backend_name` reads the choice without
importing Keras (the fingerprint stage stays fast); `import_keras` imports Keras on it, with the backend's
determinism switches set first (they only take effect before the backend initialises).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

from stages.lib.core.errors import UserError

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_BACKEND = "tensorflow"
# XLA's GPU autotuning and scatter kernels may differ run to run without it (CPU XLA is deterministic).
JAX_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"


def backend_name() -> str:
    """The backend Keras will load: $KERAS_BACKEND, else keras.json's `backend` (in $KERAS_HOME, default
    ~/.keras), else tensorflow — Keras' own order. Raises UserError for a backend the project does not run on."""
    name = os.environ.get("KERAS_BACKEND", "").strip()
    where = "KERAS_BACKEND"
    if not name:
        config = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
        try:
            name = str(json.loads(config.read_text()).get("backend", "")).strip()
            where = str(config)
        except (OSError, ValueError, AttributeError):
            name = ""
    name = name or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise UserError(f"{where} = {name!r}: the project runs on {', '.join(BACKENDS)}; set KERAS_BACKEND to one")
    return name


def set_determinism_switches(name: str) -> None:
    """Environment switches that make the backend's GPU kernels deterministic; read when it initialises."""
    if name == "jax" and JAX_DETERMINISM_FLAG.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {JAX_DETERMINISM_FLAG}".strip()
    elif name == "torch":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS' condition for determinism


def import_keras() -> ModuleType:
    """`keras` on the chosen backend (TensorFlow quietly, as stages.lib.core.tf_import does), checked to be it."""
    name = backend_name()
    os.environ["KERAS_BACKEND"] = name  # what keras.json said, made explicit for Keras and subprocesses
    set_determinism_switches(name)
    if name == "tensorflow":
        from stages.lib.core.tf_import import import_tensorflow

        import_tensorflow()
    import keras

    if keras.backend.backend() != name:  # Keras was imported earlier in this process, on another backend
        raise RuntimeError(f"Keras is already running on {keras.backend.backend()}, not {name}")
    return keras
