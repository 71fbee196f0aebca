"""One typed definition of the params (stages.lib.core.schema): a new param is a field plus its params.yaml line,
and it is then known and checked; a new loss is one module registering itself, and a head trains with it;
docs/params.md documents exactly the params the schema has."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stages.lib.core import params as core_params
from stages.lib.core.errors import UserError
from stages.lib.core.params import GridPoint
from stages.lib.core.schema import Spec, integer, param, read, real
from stages.lib.losses import make_loss, registry
from stages.lib.losses import settings as loss_settings
from stages.lib.losses.ops import ce, ce_grad
from stages.lib.train.head import fit_head_grid
from toolkit.project import DEFAULT_PARAMS_FILE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def raw() -> dict[str, Any]:
    return core_params.load_params(DEFAULT_PARAMS_FILE)


def test_a_new_param_is_one_field_and_is_then_known_and_checked(monkeypatch, raw) -> None:
    # The whole edit: a field in a section's dataclass (and its line in params.yaml).
    @dataclasses.dataclass(frozen=True)
    class Evaluate(core_params.EvaluateParams):
        bins: int = param(integer(1, 100), default=10)

    sections = tuple(
        (name, Evaluate if cls is core_params.EvaluateParams else cls) for name, cls in core_params.SECTIONS
    )
    monkeypatch.setattr(core_params, "SECTIONS", sections)
    raw = copy.deepcopy(raw)
    raw["evaluate"]["bins"] = 20
    loss_settings.check_all(raw)  # known now, and valid
    assert "bins" in core_params.known_keys()["evaluate"] and "evaluate.bins" in loss_settings.every_param()
    assert read(Evaluate, raw["evaluate"], "evaluate")["bins"] == 20
    raw["evaluate"]["bins"] = 0
    with pytest.raises(UserError, match=r"^evaluate\.bins = 0: must be an integer in \[1, 100\]$"):
        loss_settings.check_all(raw)
    del raw["evaluate"]["bins"]
    with pytest.raises(UserError, match=r"^evaluate\.bins is missing from params\.yaml$"):
        loss_settings.check_all(raw)


def test_without_the_field_the_key_is_a_typo_with_a_hint(raw) -> None:
    raw = copy.deepcopy(raw)
    raw["evaluate"]["metrik"] = "auc"
    with pytest.raises(
        UserError, match=r"^evaluate\.metrik: unknown param in params\.yaml; did you mean evaluate\.metric\?$"
    ):
        loss_settings.check_all(raw)


def _squared_value(ops, y, log_p, context, weight: float):
    return weight * ce(ops, y, log_p)


def _squared_gradient(y, log_p, context, weight: float):
    return weight * ce_grad(y, log_p)


@pytest.fixture
def scaled_ce():
    """A trivial loss, as a new module would register it: weight × cross-entropy."""
    loss = registry.register(
        registry.Loss(
            "scaled_ce",
            99,
            "none (a test)",
            _squared_value,
            _squared_gradient,
            params={"weight": Spec(real(lambda w: w > 0, "> 0"), default=2.0)},
        )
    )
    yield loss
    registry.unregister("scaled_ce")


def test_a_registered_loss_is_checked_and_trains_a_head(scaled_ce, raw) -> None:
    raw = copy.deepcopy(raw)
    raw["train"]["losses"] = ["bce", "scaled_ce"]
    raw["train"]["tune"]["scaled_ce"] = raw["train"]["tune"]["bce"]
    raw["train"]["fine_tune_grid"]["scaled_ce"] = raw["train"]["fine_tune_grid"]["bce"]
    raw["train"]["loss_params"]["scaled_ce"] = {"weight": 3}
    assert loss_settings.train_params(raw).loss_params["scaled_ce"] == {"weight": 3.0}
    raw["train"]["loss_params"]["scaled_ce"] = {"weight": -1}
    with pytest.raises(UserError, match=r"^train\.loss_params\.scaled_ce\.weight = -1\.0: must be > 0$"):
        loss_settings.train_params(raw)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(64, 5)).astype(np.float32)
    y = (features[:, :1] > 0).astype(np.float32)
    heads = fit_head_grid(
        features, y, task="binary", loss="scaled_ce", grid=[GridPoint(0.1, {"weight": 2.0}, {"l2": 0.1})]
    )
    assert heads.fits[0].converged
    assert np.mean((heads.head(0).predict_proba(features) >= 0.5) == y[:, 0]) > 0.9
    z = rng.normal(size=(8, 1)).astype(np.float32)
    np.testing.assert_allclose(
        make_loss("scaled_ce", "binary", {}, backend="numpy")(y[:8], z),
        2.0 * make_loss("bce", "binary", {}, backend="numpy")(y[:8], z),
        rtol=1e-6,
    )


def test_params_md_documents_exactly_the_schema() -> None:
    """docs/params.md's table: one row per param of the schema, no row for a param that does not exist."""
    text = (ROOT / "docs" / "params.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", text, flags=re.MULTILINE))
    in_schema = {name for name in loss_settings.every_param() if not name.startswith("train.loss_params.")}
    assert documented == in_schema, (sorted(in_schema - documented), sorted(documented - in_schema))


def test_losses_md_names_every_loss() -> None:
    text = (ROOT / "docs" / "losses.md").read_text()
    assert [loss.name for loss in registry.losses() if f"`{loss.name}`" not in text] == []


def test_noise_type_seed_says_its_new_name(raw) -> None:
    raw = copy.deepcopy(raw)
    raw["noise_type"] = "seed"
    with pytest.raises(UserError, match=r"^noise_type = 'seed': .* now called notebook; write notebook$"):
        core_params.noise_params(raw)
    raw["noise_type"] = "notebook"
    assert core_params.noise_params(raw).kind == "notebook"
