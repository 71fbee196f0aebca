"""On PYTHONPATH, with $HOLD_AT_LINE set: a stage (`python -m stages.<name>`) that writes a line holding that
text to stderr is held right after writing it, until a signal ends it.

tests/e2e/test_interrupts.py interrupts a stage at an event the stage itself emits (the line, which the test
waits for in the output), so the stage is known to be midway when the signal arrives, however loaded the
machine: a test that only polls for a file and then signals races the stage to its end. Nothing else in the
stage changes; processes other than stages (dvc itself, the shell) are left alone.
"""

from __future__ import annotations

import os
import sys
import time
from itertools import pairwise
from typing import Any

HOLD_AT = os.environ.get("HOLD_AT_LINE")


class HeldAfterLine:
    """sys.stderr, but a write that holds HOLD_AT never returns: the process sleeps until a signal ends it
    (SIGINT raises KeyboardInterrupt out of the sleep, as Ctrl-C would out of the stage's work)."""

    def __init__(self, stream: Any, text: str) -> None:
        self._stream = stream
        self._text = text

    def write(self, data: str) -> int:
        written = self._stream.write(data)
        if self._text in data:
            self._stream.flush()
            while True:
                time.sleep(3600)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def is_stage() -> bool:
    return any(flag == "-m" and module.startswith("stages.") for flag, module in pairwise(sys.orig_argv))


if HOLD_AT and is_stage():
    sys.stderr = HeldAfterLine(sys.stderr, HOLD_AT)
