"""Property tests (Hypothesis) of the params checker: whatever YAML a user writes, `check_all` and
`load_checked_params` either accept it or raise the one-line UserError that names the param; nothing else
(no TypeError, OverflowError, KeyError from inside the checks)."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stages.lib.core import params as core_params
from stages.lib.core.errors import UserError
from stages.lib.losses import settings as loss_settings
from toolkit.project import default_params

PARAMS = default_params()
# Few enough examples for every CI run (a second or two each here); database=None: no .hypothesis/ folder.
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
FILE_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=100)

# What yaml.safe_load can give: scalars (ints beyond a float's range, nan and inf, dates), lists, mappings.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["all", "auto", "val", "last", "true", "given", "asymmetric", "multiclass", "bce", "pruned"])
    | st.dates()
    | st.datetimes()
)
KEYS = st.text(max_size=8) | st.integers() | st.booleans() | st.none()
YAML_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)


def leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of params.yaml, sections and leaves alike."""
    paths = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            paths += leaf_paths(value, (*prefix, key))
    return paths


# Known paths, and new keys at every level (a typo, an unknown loss).
PATHS = [*leaf_paths(PARAMS), ("extra",), ("data", "extra"), ("train", "loss_params", "focal"), ("detect", "x")]


def set_path(raw: dict, path: tuple[str, ...], value: Any) -> dict:
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return node


def assert_names_the_param(error: UserError, path: tuple[str, ...]) -> None:
    """One line that names the changed param, or the section or mapping it sits in."""
    message = str(error)
    assert "\n" not in message, message
    names = {".".join(path[:n]) for n in range(1, len(path) + 1)}
    assert any(name in message for name in names), f"{path}: {message}"


@pytest.fixture(scope="module")
def params_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file every example overwrites (a folder per example would cost more than the check)."""
    return tmp_path_factory.mktemp("params") / "params.yaml"


def test_the_shipped_params_pass() -> None:
    loss_settings.check_all(copy.deepcopy(PARAMS))


@PROPERTY_SETTINGS
@given(path=st.sampled_from(PATHS), value=YAML_VALUES)
def test_any_value_anywhere_is_accepted_or_refused_in_one_line(path: tuple[str, ...], value: Any) -> None:
    raw = copy.deepcopy(PARAMS)
    set_path(raw, path, value)
    try:
        loss_settings.check_all(raw)
    except UserError as error:
        assert_names_the_param(error, path)


@PROPERTY_SETTINGS
@given(changes=st.lists(st.tuples(st.sampled_from(PATHS), YAML_VALUES), min_size=2, max_size=5))
def test_several_values_at_once(changes: list[tuple[tuple[str, ...], Any]]) -> None:
    """Several params changed together (impossible combinations): accepted or one UserError."""
    raw = copy.deepcopy(PARAMS)
    for path, value in changes:
        try:
            set_path(raw, path, value)
        except (KeyError, TypeError):  # an earlier change replaced a section this path goes through
            continue
    try:
        loss_settings.check_all(raw)
    except UserError as error:
        assert "\n" not in str(error)


@FILE_SETTINGS
@given(document=YAML_VALUES | st.dictionaries(KEYS, YAML_VALUES, max_size=6))
def test_any_params_file_is_loaded_or_refused(params_file: Path, document: Any) -> None:
    """A whole params.yaml of anything, through the YAML parser: the stages' entry point raises UserError only."""
    params_file.write_text(yaml.safe_dump(document))
    with pytest.raises(UserError):
        loss_settings.load_checked_params(params_file)


@FILE_SETTINGS
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_as_params_file(params_file: Path, content: bytes) -> None:
    """Not YAML, not UTF-8, truncated: a UserError (200 random bytes are never a whole valid params file)."""
    params_file.write_bytes(content)
    with pytest.raises(UserError):
        loss_settings.load_checked_params(params_file)


def test_examples_the_properties_found() -> None:
    """Values that once escaped the checks as other exceptions, kept as plain examples."""
    cases = [
        (("noise",), 10**400),  # OverflowError in math.isfinite
        (("train", "learning_rate"), -(10**400)),
        (("train", "loss_params", "gce", "q"), 10**400),
        (("train", "loss_params", "sce", "beta"), 10**400),
        (("train", "labels"), [["clean"]]),  # TypeError: unhashable list in set()
        (("train", "labels"), [{"noisy": 1}]),
        (("data", "source"), datetime.date(2020, 1, 1)),
    ]
    for path, value in cases:
        raw = copy.deepcopy(PARAMS)
        set_path(raw, path, value)
        with pytest.raises(UserError) as error:
            loss_settings.check_all(raw)
        assert_names_the_param(error.value, path)


def test_params_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes("noise: 0.3 # réglé\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"params\.yaml is not UTF-8 text"):
        core_params.load_params(path)


def test_integer_too_long_for_python(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: " + "9" * 5000 + "\n")
    with pytest.raises(UserError, match=r"params\.yaml is not valid YAML"):
        core_params.load_params(path)
