"""What training shows while it runs: one progress bar per variant over its epochs (all seeds'), on stderr,
drawn only when stderr is a terminal. Under a log file or a pipe (CI, Slurm, a test capturing the output)
the bar is off: tqdm would write every redraw there. The per-epoch numbers go to DVCLive's files, not to
the terminal; each seed ends with one summary line (stages.lib.train.training.summary_line)."""

from __future__ import annotations

import sys

from tqdm import tqdm


def epoch_bar(variant: str, total_epochs: int) -> tqdm:
    """The variant's bar over `total_epochs` (seeds × train.epochs); a context manager. `disable=None`:
    tqdm turns it off when stderr is not a terminal."""
    return tqdm(total=total_epochs, desc=f"train {variant}", unit="epoch", file=sys.stderr, disable=None, leave=True)


def say(line: str) -> None:
    """A line on stderr that leaves a bar drawn below it intact (printed even when the bar is off)."""
    tqdm.write(line, file=sys.stderr)
