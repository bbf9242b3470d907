"""The dashboards' statistics against hand-computed cases."""

import pytest

from insights.statistics import (
    binomial_two_sided_p,
    histogram,
    krippendorff_alpha_interval,
    median,
    pairwise_agreement,
    wilson_interval,
)


def test_alpha_matches_the_hand_computed_example():
    # Units (1, 1) and (2, 3); n = 4 pairable values.
    # D_o = (0 + (1 + 1) / 1) / 4 = 0.5; D_e = 2 * (0+1+4+1+4+1) / (4 * 3) = 22 / 12; alpha = 1 - 6/22 = 8/11.
    assert krippendorff_alpha_interval([[1, 1], [2, 3]]) == pytest.approx(8 / 11)


def test_alpha_ignores_single_value_units_and_is_one_on_perfect_agreement():
    assert krippendorff_alpha_interval([[1, 1], [2, 3], [7]]) == pytest.approx(8 / 11)
    assert krippendorff_alpha_interval([[3.5, 3.5], [-1.5, -1.5, -1.5]]) == pytest.approx(1.0)


def test_alpha_is_negative_when_coders_disagree_systematically():
    alpha = krippendorff_alpha_interval([[1, -1], [-1, 1], [2, -2]])
    assert alpha is not None and alpha < 0


def test_alpha_is_undefined_without_pairs_or_variation():
    assert krippendorff_alpha_interval([[1], [2]]) is None
    assert krippendorff_alpha_interval([[2, 2], [2, 2]]) is None


def test_pairwise_agreement_counts_every_pair_within_a_unit():
    # Unit of three: pairs (a,a) agree, (a,b) and (a,b) do not; unit of two agrees.
    assert pairwise_agreement([["a", "a", "b"], ["x", "x"], ["alone"]]) == (2, 4)


def test_wilson_interval_brackets_the_rate():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_binomial_test_matches_exact_values():
    assert binomial_two_sided_p(5, 10) == pytest.approx(1.0)
    # P(X <= 1 or X >= 9) for Bin(10, 1/2) = 22 / 1024.
    assert binomial_two_sided_p(9, 10) == pytest.approx(22 / 1024)
    assert binomial_two_sided_p(0, 10) == pytest.approx(2 / 1024)


def test_median_and_histogram():
    assert median([3, 1, 2]) == 2 and median([4, 1, 2, 3]) == 2.5 and median([]) is None
    assert histogram([0, 5, 10, 25, 999], [0, 10, 20, 30]) == [2, 1, 2]
