"""One kind of error for everything a user can fix, and the entry point every stage runs through."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem with params or input data: reported in one line, without a traceback."""


def one_line(text: object, limit: int | None = None) -> str:
    """`text` on a single line (third-party messages often span several), cut to `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if limit is None or len(flat) <= limit else flat[: limit - 1] + "…"


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's main(); a user error becomes one `<name>: error: ...` line on stderr and exit status 2."""
    try:
        main()
    except KeyboardInterrupt:
        print(f"{name}: interrupted; no output was completed", file=sys.stderr)
        sys.exit(130)
    except UserError as error:
        print(f"{name}: error: {one_line(error)}", file=sys.stderr)
        sys.exit(2)
