#!/usr/bin/env bash
# On a machine with a GPU: fine-tune ResNet50 through the pipeline on a few hundred synthetic images and
# print the devices found and images/second for embed and for fine-tuning (benchmarks/gpu_check.py).
# Needs the project's environment: pip install -r requirements-gpu.txt -r requirements-dev.txt
# Arguments go to gpu_check.py (--images, --image-size, --epochs, --batch-size, --blocks, --no-xla).
set -euo pipefail
cd "$(dirname "$0")/.."
python=python3
[[ -x .venv/bin/python ]] && python=.venv/bin/python
# The check is meant to fit a short loan of a GPU machine: stop it rather than overrun.
exec timeout --kill-after=10 290 "$python" benchmarks/gpu_check.py "$@"
