"""stages.lib.core.lockfile: a dvc.lock that DVC cannot read (a kill while DVC rewrote it) is named in one line with
the fix, by DVC's own reader and schema; one DVC can read passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.lib.core.errors import UserError
from stages.lib.core.lockfile import RECOVERY, check_lock_file

GOOD = """schema: '2.0'
stages:
  fingerprint:
    cmd: python -m stages.fingerprint
    outs:
    - path: data/fingerprints/source.json
      hash: md5
      md5: 0123456789abcdef0123456789abcdef
      size: 87
  download:
    cmd: python -m stages.download
"""


def test_a_readable_lock_file_passes(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text(GOOD)
    assert check_lock_file(tmp_path / "dvc.lock") == f"{tmp_path / 'dvc.lock'}: DVC can read it (2 stages recorded)"
    # Cut after a whole stage, it is still a lock file DVC reads (it reruns the stage it no longer records).
    (tmp_path / "dvc.lock").write_text(GOOD[: GOOD.index("  download:")])
    assert "DVC can read it (1 stages recorded)" in check_lock_file(tmp_path / "dvc.lock")


def test_no_lock_file_yet_passes(tmp_path: Path) -> None:
    assert "none yet" in check_lock_file(tmp_path / "dvc.lock")


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"", "is empty (0 bytes)"),
        (b"\n\n", "is empty (2 bytes)"),
        (GOOD[:150].encode(), "is not valid YAML (while scanning a simple key"),
        (b"stages: {}\n", "is not a DVC lock file (required key not provided @ data['schema']"),
        (b"schema: '2.0'\n# \xe9t\xe9\n", "is not UTF-8 text"),
    ],
)
def test_a_broken_lock_file_is_named_with_the_fix(tmp_path: Path, content: bytes, what: str) -> None:
    """Issue 30 case 7: DVC said `required key not provided, in schema` and nothing said what to do."""
    lock = tmp_path / "dvc.lock"
    lock.write_bytes(content)
    with pytest.raises(UserError) as caught:
        check_lock_file(lock)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{lock} {what}")
    assert message.endswith(RECOVERY)
    assert lock.read_bytes() == content  # nothing repaired behind the user's back
