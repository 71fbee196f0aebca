"""Unit tests for stages.lib.noise.corruption: one seeded noisy draw per repeat seed, and the realised-noise summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.errors import UserError
from stages.lib.core.params import NoiseParams
from stages.lib.noise.corruption import class_rates_by_index, corrupt_pool, repeat_rng

BINARY_NAMES = ["not_sunflowers", "sunflowers"]
FLOWER_NAMES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
REPEATS = (0, 1, 2)


def clean_table(labels: list[int] | np.ndarray) -> pd.DataFrame:
    """A training pool as the corrupt stage reads it: ids with gaps (test images sit between them)."""
    labels = np.asarray(labels, dtype=np.int64)
    return pd.DataFrame({"id": np.arange(len(labels)) * 3 + 5, "label": labels})


# 50 images, 10 of them sunflowers (20 %, close to tf_flowers' 19 %), in no particular order.
BINARY_POOL = clean_table(np.random.default_rng(0).permutation([1] * 10 + [0] * 40))
# 40 images: daisy 12, dandelion 10, roses 8, sunflowers 6, tulips 4.
FLOWER_POOL = clean_table(np.random.default_rng(1).permutation(np.repeat(np.arange(5), [12, 10, 8, 6, 4])))


def symmetric(rate: float) -> NoiseParams:
    return NoiseParams(rate=rate, kind="symmetric", class_rates=None)


def per_seed_blocks(noisy: pd.DataFrame) -> dict[int, pd.DataFrame]:
    return {int(seed): block.reset_index(drop=True) for seed, block in noisy.groupby("seed", sort=False)}


def test_long_table_has_one_block_of_rows_per_seed_in_order() -> None:
    noisy, _ = corrupt_pool(BINARY_POOL, symmetric(0.3), BINARY_NAMES, seed=0, repeats=REPEATS)
    assert list(noisy.columns) == ["seed", "id", "clean_label", "label", "flipped", "split"]
    assert set(noisy["split"]) == {"train"}
    assert len(noisy) == len(BINARY_POOL) * len(REPEATS)
    assert noisy["seed"].tolist() == [s for s in REPEATS for _ in range(len(BINARY_POOL))]
    for block in per_seed_blocks(noisy).values():
        np.testing.assert_array_equal(block["id"], BINARY_POOL["id"])
        np.testing.assert_array_equal(block["clean_label"], BINARY_POOL["label"])
        np.testing.assert_array_equal(block["flipped"], block["label"] != block["clean_label"])
        assert block["flipped"].dtype == bool


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 0), (0.1, 5), (0.3, 15), (0.5, 25), (0.55, 28), (1.0, 50)])
def test_symmetric_flips_exactly_the_rounded_count_per_seed(rate: float, expected: int) -> None:
    noisy, summary = corrupt_pool(BINARY_POOL, symmetric(rate), BINARY_NAMES, seed=0, repeats=REPEATS)
    for seed, block in per_seed_blocks(noisy).items():
        assert int(block["flipped"].sum()) == expected
        assert summary["seeds"][str(seed)]["flipped"] == expected
        assert summary["seeds"][str(seed)]["flip_rate"] == pytest.approx(expected / len(BINARY_POOL))
    assert summary["flip_rate"] == pytest.approx(expected / len(BINARY_POOL))


def test_each_seed_draws_its_own_images() -> None:
    noisy, _ = corrupt_pool(BINARY_POOL, symmetric(0.3), BINARY_NAMES, seed=0, repeats=REPEATS)
    flipped_ids = [frozenset(block.loc[block["flipped"], "id"]) for block in per_seed_blocks(noisy).values()]
    assert len(set(flipped_ids)) == len(REPEATS)


def test_same_seeds_same_draws_and_the_global_seed_matters() -> None:
    first, _ = corrupt_pool(BINARY_POOL, symmetric(0.3), BINARY_NAMES, seed=4, repeats=REPEATS)
    again, _ = corrupt_pool(BINARY_POOL, symmetric(0.3), BINARY_NAMES, seed=4, repeats=REPEATS)
    other, _ = corrupt_pool(BINARY_POOL, symmetric(0.3), BINARY_NAMES, seed=5, repeats=REPEATS)
    pd.testing.assert_frame_equal(first, again)
    assert not first["label"].equals(other["label"])


def test_a_seed_draws_the_same_labels_whatever_other_seeds_run() -> None:
    # Adding a repeat seed to train.seeds must not change the noisy labels of the existing ones.
    alone, _ = corrupt_pool(BINARY_POOL, symmetric(0.3), BINARY_NAMES, seed=0, repeats=(2,))
    together, _ = corrupt_pool(BINARY_POOL, symmetric(0.3), BINARY_NAMES, seed=0, repeats=(0, 1, 2))
    np.testing.assert_array_equal(alone["label"], per_seed_blocks(together)[2]["label"])


def test_summary_matches_the_labels_it_describes() -> None:
    noisy, summary = corrupt_pool(FLOWER_POOL, symmetric(0.4), FLOWER_NAMES, seed=0, repeats=REPEATS)
    assert summary["noise"] == 0.4
    assert summary["noise_type"] == "symmetric"
    assert summary["train_size"] == len(FLOWER_POOL)
    assert summary["label_names"] == FLOWER_NAMES
    assert sorted(summary["seeds"]) == [str(s) for s in REPEATS]
    for seed, block in per_seed_blocks(noisy).items():
        realised = summary["seeds"][str(seed)]
        assert list(realised["per_class"]) == FLOWER_NAMES
        for index, name in enumerate(FLOWER_NAMES):
            members = block[block["clean_label"] == index]
            assert realised["per_class"][name] == pytest.approx(members["flipped"].mean())
        matrix = np.array(realised["transition_matrix"])
        assert matrix.shape == (5, 5)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(np.diag(matrix), [1 - realised["per_class"][n] for n in FLOWER_NAMES], atol=1e-6)
        counts = np.zeros((5, 5))
        np.add.at(counts, (block["clean_label"], block["label"]), 1)
        np.testing.assert_allclose(matrix, counts / counts.sum(axis=1, keepdims=True), atol=1e-6)
    for name in FLOWER_NAMES:
        mean = np.mean([summary["seeds"][str(s)]["per_class"][name] for s in REPEATS])
        assert summary["per_class"][name] == pytest.approx(mean)
    assert summary["flip_rate"] == pytest.approx(noisy["flipped"].mean())


def test_class_rates_by_name_flip_only_that_class() -> None:
    noise = NoiseParams(rate=0.0, kind="asymmetric", class_rates={"sunflowers": 0.5})
    noisy, summary = corrupt_pool(BINARY_POOL, noise, BINARY_NAMES, seed=0, repeats=REPEATS)
    for block in per_seed_blocks(noisy).values():
        flipped = block[block["flipped"]]
        assert len(flipped) == 5  # half of the 10 sunflowers
        assert (flipped["clean_label"] == 1).all()
        assert (flipped["label"] == 0).all()
    assert summary["per_class"] == {"not_sunflowers": 0.0, "sunflowers": 0.5}


def test_multiclass_class_rates_pair_flip_the_named_classes() -> None:
    noise = NoiseParams(rate=0.0, kind="asymmetric", class_rates={"tulips": 1.0, "daisy": 0.25})
    noisy, summary = corrupt_pool(FLOWER_POOL, noise, FLOWER_NAMES, seed=0, repeats=(0,))
    flipped = noisy[noisy["flipped"]]
    assert sorted(flipped["clean_label"].tolist()) == [0, 0, 0] + [4] * 4  # 25 % of 12 daisies, every tulip
    assert ((flipped["clean_label"] + 1) % 5 == flipped["label"]).all()  # daisy -> dandelion, tulips -> daisy
    assert summary["per_class"] == {"daisy": 0.25, "dandelion": 0.0, "roses": 0.0, "sunflowers": 0.0, "tulips": 1.0}


def test_class_rates_by_index_maps_names_to_positions() -> None:
    assert class_rates_by_index(None, FLOWER_NAMES) is None
    assert class_rates_by_index({"tulips": 0.2, "daisy": 0.1}, FLOWER_NAMES) == {4: 0.2, 0: 0.1}


def test_unknown_class_name_is_a_user_error_listing_the_classes() -> None:
    noise = NoiseParams(rate=0.0, kind="asymmetric", class_rates={"sunflower": 0.4})
    with pytest.raises(UserError, match=r"noise_class_rates: unknown class 'sunflower'; allowed: not_sunflowers, sun"):
        corrupt_pool(BINARY_POOL, noise, BINARY_NAMES, seed=0, repeats=REPEATS)


def test_the_input_table_is_left_alone() -> None:
    before = FLOWER_POOL.copy()
    corrupt_pool(FLOWER_POOL, symmetric(0.5), FLOWER_NAMES, seed=0, repeats=REPEATS)
    pd.testing.assert_frame_equal(FLOWER_POOL, before)


def test_repeat_rng_is_determined_by_both_seeds() -> None:
    def draw(seed: int, repeat: int) -> np.ndarray:
        return repeat_rng(seed, repeat).integers(0, 2**31, size=8)

    np.testing.assert_array_equal(draw(0, 1), draw(0, 1))
    distinct = {draw(seed, repeat).tobytes() for seed, repeat in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]}
    assert len(distinct) == 5


# A validation set of 30 images (6 sunflowers), ids between the pool's.
BINARY_VAL = pd.DataFrame(
    {"id": np.arange(30) * 3 + 6, "label": np.random.default_rng(2).permutation([1] * 6 + [0] * 24)}
)


@pytest.mark.parametrize(
    # Per class, pool (10 sunflowers, 40 others) and validation set (6 and 24) alike: at 0.55, 5.5 -> 6 and 22
    # flips in the pool, 3.3 -> 3 and 13.2 -> 13 in the validation set (16, where round(0.55 * 30) would be 17).
    ("rate", "pool_flips", "val_flips"),
    [(0.1, 5, 3), (0.3, 15, 9), (0.55, 28, 16), (1.0, 50, 30)],
)
def test_validation_labels_get_the_same_noise_with_their_own_exact_count(
    rate: float, pool_flips: int, val_flips: int
) -> None:
    noisy, summary = corrupt_pool(BINARY_POOL, symmetric(rate), BINARY_NAMES, seed=0, repeats=REPEATS, val=BINARY_VAL)
    without_val, _ = corrupt_pool(BINARY_POOL, symmetric(rate), BINARY_NAMES, seed=0, repeats=REPEATS)
    for seed, block in per_seed_blocks(noisy).items():
        train, val = block[block["split"] == "train"], block[block["split"] == "val"]
        assert list(block["split"]) == ["train"] * len(BINARY_POOL) + ["val"] * len(BINARY_VAL)
        np.testing.assert_array_equal(val["id"], BINARY_VAL["id"])
        np.testing.assert_array_equal(val["clean_label"], BINARY_VAL["label"])
        assert int(train["flipped"].sum()) == pool_flips and int(val["flipped"].sum()) == val_flips
        assert summary["seeds"][str(seed)]["val_flipped"] == val_flips
        # The training pool's draw does not depend on the validation set.
        same_seed = without_val[without_val["seed"] == seed].reset_index(drop=True)
        np.testing.assert_array_equal(train["label"], same_seed["label"])
    assert summary["flip_rate"] == pytest.approx(pool_flips / len(BINARY_POOL))  # the training pool only
    assert summary["val_flip_rate"] == pytest.approx(val_flips / len(BINARY_VAL))
    assert summary["val_size"] == len(BINARY_VAL)
    val_labels = [block.loc[block["split"] == "val", "label"].to_numpy() for block in per_seed_blocks(noisy).values()]
    if rate < 1.0:  # at 1.0 every binary label flips: one possible draw
        assert not np.array_equal(val_labels[0], val_labels[1])  # drawn per seed


def test_noise_json_shows_per_class_and_split_the_flips_and_the_count_the_model_fixes() -> None:
    noisy, summary = corrupt_pool(BINARY_POOL, symmetric(0.55), BINARY_NAMES, seed=0, repeats=REPEATS, val=BINARY_VAL)
    for seed, block in per_seed_blocks(noisy).items():
        table = summary["seeds"][str(seed)]["per_class_flips"]
        assert table == {
            "train": {
                "not_sunflowers": {"n": 40, "flipped": 22, "expected": 22},
                "sunflowers": {"n": 10, "flipped": 6, "expected": 6},  # 5.5 -> 6
            },
            "val": {
                "not_sunflowers": {"n": 24, "flipped": 13, "expected": 13},  # 13.2 -> 13
                "sunflowers": {"n": 6, "flipped": 3, "expected": 3},  # 3.3 -> 3
            },
        }
        for split, cells in table.items():
            rows = block[block["split"] == split]
            for index, name in enumerate(BINARY_NAMES):
                assert cells[name]["flipped"] == int(rows.loc[rows["clean_label"] == index, "flipped"].sum())
    assert summary["per_class_exact"] is True


def test_per_class_flips_of_every_class_for_multiclass_and_asymmetric_noise() -> None:
    noise = NoiseParams(rate=0.0, kind="asymmetric", class_rates={"tulips": 1.0, "daisy": 0.25})
    _, summary = corrupt_pool(FLOWER_POOL, noise, FLOWER_NAMES, seed=0, repeats=(0,))
    table = summary["seeds"]["0"]["per_class_flips"]
    assert list(table) == ["train"]  # no validation set
    assert {name: (cell["n"], cell["flipped"], cell["expected"]) for name, cell in table["train"].items()} == {
        "daisy": (12, 3, 3),
        "dandelion": (10, 0, 0),
        "roses": (8, 0, 0),
        "sunflowers": (6, 0, 0),
        "tulips": (4, 4, 4),
    }
    _, symmetric_summary = corrupt_pool(FLOWER_POOL, symmetric(0.3), FLOWER_NAMES, seed=0, repeats=REPEATS)
    for seed in REPEATS:
        cells = symmetric_summary["seeds"][str(seed)]["per_class_flips"]["train"]
        # 3.6 -> 4, 3, 2.4 -> 2, 1.8 -> 2, 1.2 -> 1: 12 flips (round(0.3 * 40) is also 12).
        assert [cells[name]["flipped"] for name in FLOWER_NAMES] == [4, 3, 2, 2, 1]
    assert symmetric_summary["per_class_exact"] is True


def test_the_seed_rule_fixes_no_count() -> None:
    noise = NoiseParams(rate=0.4, kind="notebook", class_rates=None)
    _, summary = corrupt_pool(BINARY_POOL, noise, BINARY_NAMES, seed=0, repeats=REPEATS, val=BINARY_VAL)
    for seed in REPEATS:
        for cells in summary["seeds"][str(seed)]["per_class_flips"].values():
            assert all(cell["expected"] is None for cell in cells.values())
    assert summary["per_class_exact"] is None
