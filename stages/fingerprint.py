"""Fingerprints of the inputs that live outside the repo, so that changing them reruns what reads them.

`data.source` (a folder or an archive), `model.weights` and `noise_labels` (files) are named by path in
params.yaml; DVC would notice a new path but not new files behind the same path. This stage runs on every
`dvc repro` (`always_changed`) and hashes the contents (about 0.3 s per 230 MB, the size of tf_flowers); it
also records the Keras backend in use (stages/lib/backbone/backend.py). A fingerprint's bytes change only when the
contents do, so the stages that depend on it (download; embed and fine-tuning; corrupt) rerun exactly then.
What a fingerprint holds and why: stages/lib/data/sources.py (model.weights: stages/lib/backbone/resnet.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from stages.lib.backbone.backend import backend_name
from stages.lib.backbone.resnet import weights_fingerprint
from stages.lib.core.errors import run_stage
from stages.lib.core.io import FINGERPRINTS_DIR, atomic_path
from stages.lib.data.sources import noise_labels_fingerprint, source_fingerprint
from stages.lib.losses.settings import read_params_with_losses


def write_fingerprint(path: Path, fingerprint: dict[str, Any]) -> None:
    # Same contents, same bytes: DVC then sees an unchanged dependency downstream.
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")


def main() -> None:
    params = read_params_with_losses()
    fingerprints = {
        "source": source_fingerprint(params.data.source),
        "weights": weights_fingerprint(params.model.weights),
        "noise_labels": noise_labels_fingerprint(params.noise.labels_file),
        # The Keras backend embed and fine-tuning run on ($KERAS_BACKEND): another one reruns them.
        "backend": {"kind": backend_name()},
    }
    for name, fingerprint in fingerprints.items():
        write_fingerprint(FINGERPRINTS_DIR / f"{name}.json", fingerprint)
        digest = f" sha256 {fingerprint['sha256'][:12]}" if "sha256" in fingerprint else ""
        print(f"fingerprint: {name}: {fingerprint['kind']}{digest}", file=sys.stderr)


if __name__ == "__main__":
    run_stage("fingerprint", main)
