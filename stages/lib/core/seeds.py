"""Seeds derived from several integers (the global `seed` and a repeat's `train.seeds` entry, say): a module
of its own so that the stages that only need a seed do not depend on (and rerun for) the backbone's code."""

from __future__ import annotations

import numpy as np


def derived_seed(*parts: int) -> int:
    """A 31-bit seed that depends on every part (e.g. the global seed and a repeat seed)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] & 0x7FFFFFFF)
