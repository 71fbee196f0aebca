#!/usr/bin/env bash
# There, on the GPU machine (no TensorFlow, no internet; JAX or PyTorch with CUDA): install the kit's wheels
# into a temporary folder and run the check (benchmarks/gpu_kit/check.py), stopped at 9 minutes.
#   KIT_DIR/run.sh [--all] [check.py arguments]     (KERAS_BACKEND: jax by default; torch works too)
# --all installs every wheel of the kit, even those the machine already has (the kit's own test does).
set -euo pipefail
kit=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
all=false
if [[ "${1:-}" == "--all" ]]; then all=true; shift; fi
site=$(mktemp -d "${TMPDIR:-/tmp}/gpu-kit-site.XXXXXX")
trap 'rm -rf "$site"' EXIT
missing=()
while read -r requirement; do
    [[ -z "$requirement" || "$requirement" == \#* ]] && continue
    name=${requirement%%==*}
    module=$(case "$name" in absl-py) echo absl;; PyYAML) echo yaml;; python-dateutil) echo dateutil;;
        markdown-it-py) echo markdown_it;; Pygments) echo pygments;; *) echo "${name//-/_}";; esac)
    if $all || ! "$python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)"; then
        missing+=("$requirement")
    fi
done < "$kit/project/benchmarks/gpu_kit/requirements.txt"
if ((${#missing[@]})); then
    "$python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --find-links "$kit/wheels" \
        --target "$site" "${missing[@]}"
fi
echo "gpu kit: installed ${#missing[@]} packages into $site: ${missing[*]:-none}"
export KERAS_BACKEND=${KERAS_BACKEND:-jax}
export PYTHONPATH="$site:$kit/project${PYTHONPATH:+:$PYTHONPATH}"
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-kit-run.XXXXXX")
# Every fine-tuning model rebuilds in a fresh Keras session: JAX then loads its compiled steps from here.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$work/jax-cache}
cd "$work"
timeout --kill-after=10 540 "$python" "$kit/project/benchmarks/gpu_kit/check.py" "$@"
