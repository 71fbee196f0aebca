"""`python -m stages.check`: what DVC reads before it runs any stage, checked by the project (not a DVC stage).

When `dvc repro` stops before any stage has run, with a message about dvc.lock or params.yaml, this says in
one line what is wrong and how to fix it: dvc.lock as DVC reads it (a kill can leave it empty or cut short:
stages.lib.core.lockfile) and params.yaml as every stage checks it (a key set twice, an unknown key, a value out
of range; stages.lib.core.params). Exit status 0 when both are fine, 2 otherwise.
"""

from __future__ import annotations

import sys

from stages.lib.core.errors import run_stage
from stages.lib.core.lockfile import check_lock_file
from stages.lib.core.params import PARAMS_FILE
from stages.lib.losses.settings import read_params_with_losses


def main() -> None:
    print(f"check: {check_lock_file()}", file=sys.stderr)
    read_params_with_losses()
    print(f"check: {PARAMS_FILE}: every param is valid", file=sys.stderr)


if __name__ == "__main__":
    run_stage("check", main)
