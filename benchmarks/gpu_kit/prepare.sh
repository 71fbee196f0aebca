#!/usr/bin/env bash
# Here, with internet: fill a folder with what a GPU machine without TensorFlow or internet needs for the
# check (benchmarks/gpu_kit/run.sh): the wheels of benchmarks/gpu_kit/requirements.txt for that machine's
# Python, and the project's code. Copy the folder there and run its run.sh.
#   benchmarks/gpu_kit/prepare.sh KIT_DIR [PYTHON_VERSION]     (default: this interpreter's, e.g. 3.11)
set -euo pipefail
kit=${1:?usage: prepare.sh KIT_DIR [PYTHON_VERSION]}
root=$(cd "$(dirname "$0")/../.." && pwd)
# The checkout's own venv (README: "Tests"), else the python3 on PATH: pip download runs on it.
python=python3
[[ -x "$root/.venv/bin/python" ]] && python="$root/.venv/bin/python"
version=${2:-$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}
mkdir -p "$kit/wheels"
# Binary wheels for Linux x86-64 and that Python only: no building on the GPU machine, nothing else pulled in.
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$version" --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --dest "$kit/wheels" -r "$root/benchmarks/gpu_kit/requirements.txt"
# The project's code the check runs, with the project's default params (not a study's edited params.yaml).
rm -rf "$kit/project" && mkdir -p "$kit/project/benchmarks"
cp -r "$root/stages" "$kit/project/"
cp "$root/toolkit/default_params.yaml" "$kit/project/params.yaml"
cp -r "$root/benchmarks/gpu_kit" "$kit/project/benchmarks/"
find "$kit/project" -name __pycache__ -prune -exec rm -rf {} +
# The study's data, prepared here by the pipeline (DVC) on the digits: about 2 MiB.
(cd "$root" && "$python" benchmarks/gpu_kit/digits.py "$kit/project/benchmarks/gpu_kit/digits")
cp "$root/benchmarks/gpu_kit/run.sh" "$kit/run.sh"
echo "gpu kit: $(du -sh "$kit" | cut -f1) in $kit (Python $version wheels: $(ls "$kit/wheels" | wc -l)); there: $kit/run.sh"
