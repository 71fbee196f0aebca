"""The throw-away project builder's params merge: one test's update must never reach another's project."""

from __future__ import annotations

import copy

from toolkit.project import SMALL_PARAMS, deep_update


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
