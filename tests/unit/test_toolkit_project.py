"""The throw-away project builder's params merge: one test's update must never reach another's project."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

from toolkit.project import DEFAULT_PARAMS_FILE, PROJECT_ROOT, SMALL_PARAMS, deep_update


def test_deep_update_merges_nested_sections() -> None:
    merged = deep_update({"train": {"epochs": 3, "seeds": [0]}}, {"train": {"epochs": 2}, "noise": 0.5})
    assert merged == {"train": {"epochs": 2, "seeds": [0]}, "noise": 0.5}


def test_updating_a_merge_leaves_its_sources_unchanged() -> None:
    """The bug this guards against: `deep_update(deep_update({}, SMALL_PARAMS), {"train": {"losses": ["bce"]}})`
    wrote losses [bce] into SMALL_PARAMS itself, so every later make_project in the session trained bce only."""
    pristine = copy.deepcopy(SMALL_PARAMS)
    small = deep_update({}, SMALL_PARAMS)
    deep_update(small, {"train": {"losses": ["bce"], "seeds": [0]}, "data": {"source": "/elsewhere"}})
    small["train"]["seeds"].append(1)
    assert pristine == SMALL_PARAMS
    updates = {"train": {"seeds": [0, 1]}}
    target: dict = {}
    deep_update(target, updates)
    target["train"]["seeds"].append(2)
    assert updates == {"train": {"seeds": [0, 1]}}


def test_the_defaults_are_params_yaml_as_the_project_committed_them() -> None:
    """toolkit/default_params.yaml is params.yaml as shipped: at the last commit that changed it, params.yaml held
    the same params. (The working params.yaml is not compared: a study edits and commits it.)"""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
        return result.stdout if result.returncode == 0 else ""

    defaults = DEFAULT_PARAMS_FILE.relative_to(PROJECT_ROOT).as_posix()
    rev = git("log", "-1", "--format=%H", "--", defaults).strip()
    if not rev:
        pytest.skip(f"no git history of {defaults}")
    committed = yaml.safe_load(git("show", f"{rev}:{defaults}"))
    assert committed == yaml.safe_load(git("show", f"{rev}:params.yaml")), f"{defaults} and params.yaml differ at {rev}"
