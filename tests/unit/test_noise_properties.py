"""Property tests (Hypothesis) of the noise module over random sizes, rates and class counts: the exact
counts of symmetric and asymmetric noise, class by class, and the transition matrices and flip rates
measured from any pair of label arrays.

Symmetric noise is exact per class: round(noise × n_c) flips in each class c (half up, on the decimal
rate), spread evenly over the other classes.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stages.lib.noise.models import corrupt_labels, exact_count, flip_rates
from stages.lib.noise.transition import transition_matrix

# Enough examples to meet empty classes, K = 2..6 and half-up boundaries, few enough for every CI run;
# database=None: no .hypothesis/ folder.
PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Rates as users write them (short decimals, where half-up rounding matters) and any float in [0, 1].
RATES = st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.45, 0.5, 0.7, 0.9, 1.0]) | st.floats(0.0, 1.0)
CLASS_SIZES = st.integers(2, 6).flatmap(lambda k: st.lists(st.integers(0, 40), min_size=k, max_size=k))


def shuffled_labels(sizes: list[int], seed: int) -> np.ndarray:
    """n_c labels of each class c, in a random order."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(labels).astype(np.int64)


def half_up(rate: float, n: int) -> int:
    """rate × n on the rate's decimal value, rounded half up: the rule exact_count implements, by Decimal."""
    return int((Decimal(repr(float(rate))) * n).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def confusion(clean: np.ndarray, noisy: np.ndarray, k: int) -> np.ndarray:
    counts = np.zeros((k, k), dtype=np.int64)
    for c, y in zip(clean, noisy, strict=True):
        counts[c, y] += 1
    return counts


@PROPERTY_SETTINGS
@given(rate=RATES, n=st.integers(0, 10_000))
def test_exact_count_is_decimal_rate_times_n_rounded_half_up(rate: float, n: int) -> None:
    count = exact_count(rate, n)
    assert count == half_up(rate, n)
    assert 0 <= count <= n
    assert exact_count(0.0, n) == 0 and exact_count(1.0, n) == n


@PROPERTY_SETTINGS
@given(rates=st.tuples(RATES, RATES), n=st.integers(0, 10_000))
def test_exact_count_grows_with_the_rate(rates: tuple[float, float], n: int) -> None:
    low, high = sorted(rates)
    assert exact_count(low, n) <= exact_count(high, n)


@PROPERTY_SETTINGS
@given(
    sizes=CLASS_SIZES,
    rate=RATES,
    kind=st.sampled_from(["symmetric", "asymmetric", "notebook"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_draw_is_a_labelling_of_the_same_images(sizes: list[int], rate: float, kind: str, seed: int) -> None:
    """Same shape and dtype, classes in range, the input untouched, the same draw from the same seed,
    and nothing changed at rate 0."""
    k, clean = len(sizes), shuffled_labels(sizes, seed)
    before = clean.copy()
    noisy = corrupt_labels(clean, k, rate, kind, np.random.default_rng(seed))
    assert noisy.shape == clean.shape and noisy.dtype == clean.dtype
    assert ((noisy >= 0) & (noisy < k)).all()
    np.testing.assert_array_equal(clean, before)
    np.testing.assert_array_equal(noisy, corrupt_labels(clean, k, rate, kind, np.random.default_rng(seed)))
    np.testing.assert_array_equal(corrupt_labels(clean, k, 0.0, kind, np.random.default_rng(seed)), clean)


@PROPERTY_SETTINGS
@given(sizes=CLASS_SIZES, rate=RATES, seed=st.integers(0, 2**32 - 1))
def test_symmetric_flips_exactly_per_class(sizes: list[int], rate: float, seed: int) -> None:
    """round(rate × n_c) flips in every class c, so the total is their sum (not round(rate × n))."""
    k, clean = len(sizes), shuffled_labels(sizes, seed)
    noisy = corrupt_labels(clean, k, rate, "symmetric", np.random.default_rng(seed))
    counts = confusion(clean, noisy, k)
    for c, n_c in enumerate(sizes):
        assert n_c - counts[c, c] == half_up(rate, n_c), (c, n_c, counts)
    assert int((noisy != clean).sum()) == sum(half_up(rate, n_c) for n_c in sizes)


@PROPERTY_SETTINGS
@given(sizes=CLASS_SIZES.filter(lambda s: len(s) > 2), rate=RATES, seed=st.integers(0, 2**32 - 1))
def test_symmetric_spreads_each_class_evenly_over_the_others(sizes: list[int], rate: float, seed: int) -> None:
    """Multiclass: class c's flips go to the K - 1 other classes as evenly as integers allow."""
    k, clean = len(sizes), shuffled_labels(sizes, seed)
    noisy = corrupt_labels(clean, k, rate, "symmetric", np.random.default_rng(seed))
    counts = confusion(clean, noisy, k)
    for c, n_c in enumerate(sizes):
        others = np.delete(counts[c], c)
        assert others.sum() == half_up(rate, n_c)
        assert others.max() - others.min() <= 1, (c, counts[c])


@PROPERTY_SETTINGS
@given(sizes=CLASS_SIZES, rate=RATES, seed=st.integers(0, 2**32 - 1))
def test_symmetric_total_is_the_rate_to_rounding(sizes: list[int], rate: float, seed: int) -> None:
    """Exact in total or per class, the flips number round(rate × n) give or take the rounding of each of
    the K classes (at most K / 2); binary, a flip is to the other class."""
    k, clean = len(sizes), shuffled_labels(sizes, seed)
    noisy = corrupt_labels(clean, k, rate, "symmetric", np.random.default_rng(seed))
    flipped = noisy != clean
    assert abs(int(flipped.sum()) - half_up(rate, len(clean))) <= k / 2
    if k == 2:
        np.testing.assert_array_equal(noisy[flipped], 1 - clean[flipped])


@PROPERTY_SETTINGS
@given(
    sizes=CLASS_SIZES,
    rates=st.lists(RATES, min_size=6, max_size=6),
    given_rates=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_asymmetric_flips_exactly_per_class_to_the_next_class(
    sizes: list[int], rates: list[float], given_rates: bool, seed: int
) -> None:
    """round(rate_c × n_c) of class c flip to (c + 1) mod K; without class rates, binary flips only the
    positives at `noise` and multiclass every class at `noise`."""
    k, clean = len(sizes), shuffled_labels(sizes, seed)
    noise = rates[0]
    class_rates = {c: rates[c] for c in range(k) if c % 2 == 0} if given_rates else None
    noisy = corrupt_labels(clean, k, noise, "asymmetric", np.random.default_rng(seed), class_rates=class_rates)
    if class_rates is not None:
        expected = [class_rates.get(c, 0.0) for c in range(k)]
    else:
        expected = [0.0, noise] if k == 2 else [noise] * k
    counts = confusion(clean, noisy, k)
    for c, n_c in enumerate(sizes):
        assert counts[c, (c + 1) % k] == half_up(expected[c], n_c), (c, counts)
        assert counts[c, c] + counts[c, (c + 1) % k] == n_c  # nowhere else


@PROPERTY_SETTINGS
@given(
    k=st.integers(2, 6),
    pairs=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=200),
)
def test_transition_matrix_and_flip_rates_of_any_labelling(k: int, pairs: list[tuple[int, int]]) -> None:
    """T[i, j] = #(clean i, noisy j) / #(clean i); rows of absent classes NaN; flip rates agree with T."""
    clean = np.array([c % k for c, _ in pairs], dtype=np.int64)
    noisy = np.array([y % k for _, y in pairs], dtype=np.int64)
    matrix = transition_matrix(clean, noisy, k)
    counts = confusion(clean, noisy, k)
    rates = flip_rates(clean, noisy, k)
    assert matrix.shape == (k, k)
    for i in range(k):
        n_i = counts[i].sum()
        if n_i == 0:
            assert np.isnan(matrix[i]).all() and np.isnan(rates["per_class"][i])
            continue
        np.testing.assert_allclose(matrix[i], counts[i] / n_i)
        assert matrix[i].sum() == pytest.approx(1.0)
        assert rates["per_class"][i] == pytest.approx(1.0 - matrix[i, i])
        assert rates["per_class_count"][i] == n_i - counts[i, i]
    assert rates["count"] == int((clean != noisy).sum())
    if len(pairs):
        assert rates["overall"] == pytest.approx(rates["count"] / len(pairs))
    else:
        assert np.isnan(rates["overall"])


@PROPERTY_SETTINGS
@given(sizes=CLASS_SIZES, rate=RATES, seed=st.integers(0, 2**32 - 1))
def test_symmetric_transition_matrix_has_the_rate_in_every_row(sizes: list[int], rate: float, seed: int) -> None:
    """1 - T[c, c] = round(rate × n_c) / n_c for every class present: the realised rate is the asked one,
    class by class, to one label."""
    k, clean = len(sizes), shuffled_labels(sizes, seed)
    noisy = corrupt_labels(clean, k, rate, "symmetric", np.random.default_rng(seed))
    matrix = transition_matrix(clean, noisy, k)
    for c, n_c in enumerate(sizes):
        if n_c:
            assert 1.0 - matrix[c, c] == pytest.approx(half_up(rate, n_c) / n_c)
            assert abs((1.0 - matrix[c, c]) - rate) <= 0.5 / n_c + 1e-12
