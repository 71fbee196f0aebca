"""How many CPUs this process may use: the ones it is allowed to run on (a Slurm task's allocation, `taskset`),
not every core of the machine."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity masks (macOS)
        return os.cpu_count() or 1
