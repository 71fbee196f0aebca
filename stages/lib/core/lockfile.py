"""Is dvc.lock what DVC can read? A kill can leave it broken, and then no stage can say so.

DVC 3.67.1 rewrites dvc.lock in place after each stage it runs: it opens the file with mode "w+" (which
empties it) and then writes the YAML (dvc/utils/serialize/_common.py, `_dump_data`), with no temporary
file and rename. A `dvc repro` or `dvc exp run` killed in between (SIGKILL, the OOM killer, a power cut)
leaves dvc.lock empty or cut short, and every later DVC command stops before running anything with
"'./dvc.lock' validation failed. required key not provided, in schema" or a YAML error. DVC reads
dvc.lock before it runs any stage, so the pipeline's own stages never get to run: this check is run by
hand (`python -m stages.check`), with DVC's own reader and schema, so it agrees with DVC exactly.
"""

from __future__ import annotations

from pathlib import Path

from stages.lib.core.errors import UserError, one_line

LOCK_FILE = Path("dvc.lock")
RECOVERY = (
    "a `dvc repro` or `dvc exp run` killed while DVC rewrote it leaves this. Recover with `git checkout dvc.lock` "
    "(the last committed one), or `rm dvc.lock` and `dvc repro`: stages whose outputs are in DVC's run-cache are "
    "restored from it, the others rerun"
)


def check_lock_file(path: Path = LOCK_FILE) -> str:
    """Raise a one-line UserError, with the fix, if DVC cannot read `path`; else say what it holds."""
    if not path.exists():
        return f"{path}: none yet (the first `dvc repro` writes it)"
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA
    from dvc.utils.serialize import EncodingError
    from dvc.utils.strictyaml import YAMLSyntaxError, YAMLValidationError, load

    size = path.stat().st_size
    if not path.read_bytes().strip():
        raise UserError(f"{path} is empty ({size} bytes): {RECOVERY}")
    try:
        data, _ = load(str(path), COMPILED_LOCKFILE_SCHEMA)
    except EncodingError:
        raise UserError(f"{path} is not UTF-8 text ({size} bytes): {RECOVERY}") from None
    except YAMLSyntaxError as error:
        why = one_line(str(error.__cause__).replace('in "<unicode string>", ', ""), 120)
        raise UserError(f"{path} is not valid YAML ({why}; {size} bytes): {RECOVERY}") from None
    except YAMLValidationError as error:
        why = one_line(error.exc, 120)
        raise UserError(f"{path} is not a DVC lock file ({why}; {size} bytes): {RECOVERY}") from None
    return f"{path}: DVC can read it ({len(data.get('stages') or {})} stages recorded)"
