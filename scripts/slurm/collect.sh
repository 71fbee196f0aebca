#!/usr/bin/env bash
# The collect job of a sweep (submitted by scripts/slurm/submit.py, after every task of the array succeeded):
# a fresh clone of the baseline commit fetches every experiment of that commit from origin (the headline
# metrics are in Git, the report reads the detail files from the DVC remote: no outputs needed) and writes
# the report of all of them.
#
# Arguments: ORIGIN REV WORKDIR SETUP REPORTS; WORKDIR and SETUP as in level.sh, REPORTS the folder the
# report goes to (noise_curve.png, results.md).
set -euo pipefail
origin=$1 rev=$2 workdir=${3:-${SLURM_TMPDIR:-${TMPDIR:-/tmp}}} setup=$4 reports=$5
eval "$setup"

clone="$workdir/$SLURM_JOB_NAME-$SLURM_JOB_ID-try${SLURM_RESTART_COUNT:-0}"  # requeued: a new folder
echo "collect: experiments of $rev from $origin, in $clone on $(hostname); report to $reports"
git clone -q "$origin" "$clone"
cd "$clone"
# On origin's branch when the baseline is its tip (the report then names the baseline after it), else detached.
[ "$(git rev-parse HEAD)" = "$rev" ] || git checkout -q --detach "$rev"
dvc exp pull --no-cache origin
python -m report --out "$reports"
cd /
rm -rf "$clone"  # kept when a command above failed, to look into
