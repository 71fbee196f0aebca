#!/usr/bin/env bash
# One task of a sweep's Slurm job array (submitted by scripts/slurm/submit.py): a fresh clone of the baseline
# commit runs one experiment, restoring the shared stages (download, subsample, embed, the clean variants)
# from the DVC remote, and pushes it: Git refs to origin, outputs to the DVC remote (docs/several-machines.md).
#
# Arguments: ORIGIN REV WORKDIR SETUP TASK... ; this task is TASK number $SLURM_ARRAY_TASK_ID, written as
# NAME<tab>KEY=VALUE<tab>KEY=VALUE... (the experiment's name and its -S overrides). WORKDIR empty: the node's
# $SLURM_TMPDIR or $TMPDIR or /tmp. SETUP: a shell command run first (e.g. activating a venv); may be empty.
set -euo pipefail
origin=$1 rev=$2 workdir=${3:-${SLURM_TMPDIR:-${TMPDIR:-/tmp}}} setup=$4
shift 4
tasks=("$@")
IFS=$'\t' read -r -a task <<< "${tasks[$SLURM_ARRAY_TASK_ID]}"
name=${task[0]}
overrides=()
for override in "${task[@]:1}"; do overrides+=(-S "$override"); done
eval "$setup"

# A requeued task (node failure, preemption) gets a new folder: the failed attempt's is kept to look into.
clone="$workdir/$SLURM_JOB_NAME-$SLURM_ARRAY_JOB_ID-$SLURM_ARRAY_TASK_ID-try${SLURM_RESTART_COUNT:-0}"
echo "task $SLURM_ARRAY_TASK_ID: experiment $name (${task[*]:1}) of $rev, in $clone on $(hostname)"
git clone -q "$origin" "$clone"
cd "$clone"
# On origin's branch when the baseline is its tip (the report then names the baseline after it), else detached.
[ "$(git rev-parse HEAD)" = "$rev" ] || git checkout -q --detach "$rev"
dvc exp run --pull -n "$name" "${overrides[@]}"
dvc exp push origin "$name"
cd /
rm -rf "$clone"  # kept when a command above failed, to look into
