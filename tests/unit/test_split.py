"""Unit tests for stages.lib.data.split: the task's labels and the seeded stratified split (subsample's rules)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from stages.lib.core.errors import UserError
from stages.lib.data.split import binary_or_class_labels, stratified_split
from toolkit.synthetic import TF_FLOWERS_COUNTS

# tf_flowers' class sizes scaled down tenfold: uneven, as in the real data (sunflowers 19 %).
SMALL_COUNTS = {name: count // 10 for name, count in TF_FLOWERS_COUNTS.items()}


def class_list(counts: dict[str, int], interleave: bool = True) -> list[str]:
    """One class name per image; interleaved so a split by position alone could not look stratified."""
    names = [name for name, count in counts.items() for _ in range(count)]
    return list(np.random.default_rng(1).permutation(names)) if interleave else names


CLASSES = class_list(SMALL_COUNTS)
N = len(CLASSES)  # 364 images


def expected_share(counts: dict[str, int], size: int) -> dict[str, float]:
    total = sum(counts.values())
    return {name: size * count / total for name, count in counts.items()}


@pytest.mark.parametrize("train_size", [5, 60, 183, 300])
def test_train_pool_is_stratified_and_exact(train_size: int) -> None:
    train, _, _ = stratified_split(CLASSES, train_size, None, seed=0)
    assert len(train) == train_size
    per_class = Counter(CLASSES[i] for i in train)
    for name, share in expected_share(SMALL_COUNTS, train_size).items():
        assert abs(per_class[name] - share) <= 1, (name, per_class[name], share)


def test_split_is_disjoint_sorted_and_covers_all_without_test_size() -> None:
    train, val, test = stratified_split(CLASSES, 60, None, seed=3)
    assert len(val) == 0
    assert np.all(np.diff(train) > 0)
    assert np.all(np.diff(test) > 0)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(CLASSES)))
    assert train.dtype.kind == test.dtype.kind == "i"


def test_explicit_test_size_is_respected_and_stratified() -> None:
    train, _, test = stratified_split(CLASSES, 60, 100, seed=0)
    assert (len(train), len(test)) == (60, 100)
    assert np.intersect1d(train, test).size == 0
    assert np.all(np.diff(test) > 0)
    per_class = Counter(CLASSES[i] for i in test)
    for name, share in expected_share(SMALL_COUNTS, 100).items():
        assert abs(per_class[name] - share) <= 1, (name, per_class[name], share)


def test_test_size_equal_to_the_rest_takes_all_of_it() -> None:
    _, _, test = stratified_split(CLASSES, 60, N - 60, seed=0)
    np.testing.assert_array_equal(test, stratified_split(CLASSES, 60, None, seed=0)[2])


@pytest.mark.parametrize("test_size", [1, 3, N - 62, N - 61])
def test_test_sets_too_small_or_large_to_stratify_are_still_drawn(test_size: int) -> None:
    # Fewer test images than classes, or fewer left unused than classes: sklearn cannot stratify those.
    train, _, test = stratified_split(CLASSES, 60, test_size, seed=0)
    assert (len(train), len(test)) == (60, test_size)
    assert np.intersect1d(train, test).size == 0


def test_same_seed_same_split_and_other_seeds_differ() -> None:
    first = stratified_split(CLASSES, 60, 100, seed=7)
    again = stratified_split(CLASSES, 60, 100, seed=7)
    other = stratified_split(CLASSES, 60, 100, seed=8)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[2], again[2])
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[2], other[2])


def test_the_train_pool_does_not_depend_on_test_size() -> None:
    # Changing data.test_size must not change which images the heads learn from.
    pools = [stratified_split(CLASSES, 60, test_size, seed=2)[0] for test_size in (None, 50, 200)]
    for pool in pools[1:]:
        np.testing.assert_array_equal(pool, pools[0])


@pytest.mark.parametrize(("val_size", "test_size"), [(30, None), (30, 100), (5, 1), (N - 61, None)])
def test_validation_set_is_drawn_outside_the_pool_and_never_overlaps_the_test_set(
    val_size: int, test_size: int | None
) -> None:
    train, val, test = stratified_split(CLASSES, 60, test_size, seed=4, val_size=val_size)
    assert (len(train), len(val)) == (60, val_size)
    assert len(test) == (test_size or N - 60 - val_size)
    assert np.intersect1d(train, val).size == np.intersect1d(val, test).size == np.intersect1d(train, test).size == 0
    assert np.all(np.diff(val) > 0)
    # The validation set changes neither the training pool nor, without it, the test set's draw order.
    np.testing.assert_array_equal(train, stratified_split(CLASSES, 60, test_size, seed=4)[0])


def test_validation_set_is_stratified() -> None:
    _, val, _ = stratified_split(CLASSES, 60, None, seed=0, val_size=100)
    per_class = Counter(CLASSES[i] for i in val)
    for name, share in expected_share(SMALL_COUNTS, 100).items():
        assert abs(per_class[name] - share) <= 1, (name, per_class[name], share)


def test_validation_set_that_leaves_no_test_image_names_the_param() -> None:
    with pytest.raises(UserError, match=rf"data\.train_size = 60 \+ data\.val_size = {N - 60} is more than"):
        stratified_split(CLASSES, 60, None, seed=0, val_size=N - 60)


@pytest.mark.parametrize(
    ("train_size", "test_size", "match"),
    [
        (N, None, rf"data\.train_size = {N} is more than the {N} usable images"),
        (300, N - 299, rf"data\.train_size = 300 \+ data\.test_size = {N - 299} is more than the {N}"),
        (4, None, r"data\.train_size = 4: must be at least the number of classes \(5\)"),
        (N - 4, None, rf"data\.train_size = {N - 4} leaves 4 of the {N} usable images for testing.*data\.train_size"),
    ],
)
def test_sizes_that_do_not_fit_name_the_param(train_size: int, test_size: int | None, match: str) -> None:
    with pytest.raises(UserError, match=match):
        stratified_split(CLASSES, train_size, test_size, seed=0)


def test_a_class_with_one_image_cannot_be_stratified() -> None:
    classes = class_list({"daisy": 10, "roses": 10, "tulips": 1})
    with pytest.raises(UserError, match="tulips have fewer than 2 usable images"):
        stratified_split(classes, 6, None, seed=0)


def test_binary_labels_mark_only_the_positive_class() -> None:
    classes = ["daisy", "sunflowers", "roses", "sunflowers", "tulips"]
    names = ("daisy", "roses", "sunflowers", "tulips")
    labels = binary_or_class_labels(classes, names, "binary", "sunflowers")
    np.testing.assert_array_equal(labels, [0, 1, 0, 1, 0])
    assert labels.dtype == np.int64


def test_unknown_positive_class_lists_the_classes() -> None:
    names = ("daisy", "roses", "sunflowers")
    with pytest.raises(UserError, match=r"data\.positive_class = 'Sunflowers'.*classes: daisy, roses, sunflowers"):
        binary_or_class_labels(["daisy"], names, "binary", "Sunflowers")


def test_multiclass_labels_are_class_indices() -> None:
    classes = ["tulips", "daisy", "roses", "daisy"]
    names = ("daisy", "roses", "tulips")
    labels = binary_or_class_labels(classes, names, "multiclass", "not used")
    np.testing.assert_array_equal(labels, [2, 0, 1, 0])
    assert labels.dtype == np.int64
