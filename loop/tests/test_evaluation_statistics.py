"""The evaluation statistics against hand-computed cases and published worked examples."""

import math

import pytest

from insights.statistics import krippendorff_alpha_interval
from loop.evaluation.statistics import (
    LIKERT_7,
    SAFETY_5,
    agreement_weights,
    false_refusal_rate,
    gwet_ac2,
    krippendorff_alpha,
    likert_outcome,
    mean_rating,
    mean_with_interval,
    policy_oriented,
    share,
    student_t_quantile,
    violation_rate,
    win_tie_loss,
)

# Gwet (2014), Handbook of Inter-Rater Reliability, 4th ed., p. 120: 4 raters, 12 units, categories 1-5, with
# missing ratings; the dataset `cac.raw4raters` of Gwet's R package irrCAC (github kgwet/irrCAC) and
# `raw_4raters` of its Python port (github afergadis/irrCAC, irrCAC/datasets.py). Each unit lists its ratings,
# raters 1 to 4, missing ones left out. Krippendorff (2011) works through the same values per unit (his unit 12
# is coded by another observer, which changes nothing: both coefficients only see the values of each unit).
RAW_4_RATERS = [
    [1, 1, 1],
    [2, 2, 3, 2],
    [3, 3, 3, 3],
    [3, 3, 3, 3],
    [2, 2, 2, 2],
    [1, 2, 3, 4],
    [4, 4, 4, 4],
    [1, 1, 2, 1],
    [2, 2, 2, 2],
    [5, 5, 5],
    [1, 1],
    [3],
]


def test_the_weights_are_gwets():
    # irrCAC's vignette "weighting" prints these for three categories.
    assert agreement_weights(3, "identity") == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert agreement_weights(3, "linear")[0] == [1.0, 0.5, 0.0]
    assert agreement_weights(3, "quadratic")[0] == [1.0, 0.75, 0.0]
    # Ordinal: M(k, l) = C(|k - l| + 1, 2) is 1 at distance 1 and 3 at distance 2 = M_max, so w = 1 - 1/3.
    assert agreement_weights(3, "ordinal")[0] == pytest.approx([1.0, 2 / 3, 0.0])
    with pytest.raises(ValueError, match="two categories"):
        agreement_weights(1, "ordinal")


def test_ac1_and_ac2_match_the_hand_computed_case():
    # Scale (1, 2, 3); items A = [1, 1], B = [1, 2], C = [3] (one rating: in pi only). n = 3 items, n' = 2.
    items = [[1, 1], [1, 2], [3]]
    # Identity weights. p_a: A has r = (2, 0, 0), sum r (r* - 1) = 2 * 1 = 2 over r (r - 1) = 2, so 1; B has
    # r = (1, 1, 0), sum = 0, so 0; p_a = (1 + 0) / 2 = 1/2.
    # pi = mean of r_ik / r_i = ((1 + 1/2 + 0) / 3, (0 + 1/2 + 0) / 3, (0 + 0 + 1) / 3) = (1/2, 1/6, 1/3).
    # sum pi (1 - pi) = 1/4 + 5/36 + 2/9 = 22/36; T_w / (q (q - 1)) = 3 / 6; p_e = 11/36.
    # AC1 = (1/2 - 11/36) / (1 - 11/36) = (7/36) / (25/36) = 7/25.
    ac1 = gwet_ac2(items, (1, 2, 3), "identity")
    assert ac1 is not None
    assert ac1.percent_agreement == pytest.approx(1 / 2)
    assert ac1.chance_agreement == pytest.approx(11 / 36)
    assert ac1.coefficient == pytest.approx(7 / 25)
    assert (ac1.items, ac1.paired_items) == (3, 2)
    # Standard error. ac_i = n/n' (p_a|i - p_e) / (1 - p_e): A 3/2 * (25/36) / (25/36) = 3/2, B 3/2 * (-11/25)
    # = -0.66, C 0 (a single rating). p_e|i = 1/2 * sum_k r_ik (1 - pi_k) / r_i: A 1/2 * 1/2 = 1/4, B 1/2 *
    # (1/2 + 5/6) / 2 = 1/3, C 1/2 * 2/3 = 1/3. ac*_i = ac_i - 2 (1 - 7/25) (p_e|i - 11/36) / (25/36):
    # A 3/2 + 72/625 = 1.6152, B -0.66 - 36/625 = -0.7176, C -0.0576 (their mean is 0.28 = AC1).
    # v = ((1.3352)^2 + (-0.9976)^2 + (-0.3376)^2) / (3 * 2) = 2.89193856 / 6.
    assert ac1.standard_error == pytest.approx(math.sqrt(2.89193856 / 6))
    half = 4.302652729911275 * math.sqrt(2.89193856 / 6)  # t(0.975, 2 degrees of freedom)
    assert ac1.low == pytest.approx(7 / 25 - half) and ac1.high == 1.0  # the upper end is clipped at 1
    # Ordinal weights: w = 2/3 at distance 1, 0 at distance 2; T_w = 3 + 4 * 2/3 = 17/3, so p_e = 17/18 * 22/36
    # = 187/324. p_a: A still 1; B has r* = (1 + 2/3, 2/3 + 1, 0), sum r (r* - 1) = 2/3 + 2/3 over 2, so 2/3;
    # p_a = 5/6. AC2 = (5/6 - 187/324) / (1 - 187/324) = (83/324) / (137/324) = 83/137.
    ac2 = gwet_ac2(items, (1, 2, 3), "ordinal")
    assert ac2 is not None
    assert ac2.percent_agreement == pytest.approx(5 / 6)
    assert ac2.chance_agreement == pytest.approx(187 / 324)
    assert ac2.coefficient == pytest.approx(83 / 137)


# irrCAC, gwet.ac1.raw(cac.raw4raters, weights = ...)$est, to 3 decimals: the tests of the Python port (github
# afergadis/irrCAC, test/unit/irrCAC/raw/test_gwet.py, which match the R package's output).
# (weights, p_a, p_e, coefficient, standard error, interval low; every interval's high end is clipped at 1)
PUBLISHED_GWET = [
    ("identity", 0.818, 0.190, 0.775, 0.143, 0.461),
    ("linear", 0.939, 0.571, 0.859, 0.117, 0.600),
    ("quadratic", 0.975, 0.714, 0.914, 0.104, 0.685),
    ("ordinal", 0.968, 0.685, 0.899, 0.107, 0.664),
]


@pytest.mark.parametrize(("weights", "pa", "pe", "coefficient", "error", "low"), PUBLISHED_GWET)
def test_gwet_matches_irrcac_on_the_handbook_example(weights, pa, pe, coefficient, error, low):
    result = gwet_ac2(RAW_4_RATERS, SAFETY_5, weights)
    assert result is not None
    published = (pa, pe, coefficient, error, low)
    ours = (result.percent_agreement, result.chance_agreement, result.coefficient, result.standard_error, result.low)
    assert ours == pytest.approx(published, abs=5e-4)
    assert result.high == 1.0 and (result.items, result.paired_items) == (12, 11)


def test_gwet_matches_irrcacs_vignette_to_more_decimals():
    # github kgwet/irrCAC, vignettes/weighting.html: gwet.ac1.raw(cac.raw4raters, weights = "quadratic")$est
    # prints pa 0.9753788, pe 0.7137044, coeff.se 0.10396, conf.int (0.685,1).
    result = gwet_ac2(RAW_4_RATERS, SAFETY_5, "quadratic")
    assert result is not None
    assert result.percent_agreement == pytest.approx(0.9753788, abs=5e-8)
    assert result.chance_agreement == pytest.approx(0.7137044, abs=5e-8)
    assert result.standard_error == pytest.approx(0.10396, abs=5e-6)


def test_gwet_edge_cases_are_defined():
    # Everyone agrees: p_a = 1 so AC2 = 1, with no spread between items (standard error 0).
    unanimous = gwet_ac2([[7, 7, 7], [7, 7, 7]], LIKERT_7)
    assert unanimous is not None and unanimous.coefficient == 1.0 and unanimous.standard_error == 0.0
    varied = gwet_ac2([[1, 1, 1], [5, 5], [3, 3, 3]], SAFETY_5)
    assert varied is not None and varied.coefficient == pytest.approx(1.0)
    # Nothing to agree on: no items, or a single rater per item.
    assert gwet_ac2([], SAFETY_5) is None
    assert gwet_ac2([[], []], SAFETY_5) is None
    assert gwet_ac2([[1], [2], [5]], SAFETY_5) is None
    # One item with two ratings: a coefficient, but no standard error from one item.
    single = gwet_ac2([[4, 4], []], LIKERT_7)
    assert single is not None and single.standard_error is None and single.low is None
    with pytest.raises(ValueError, match="not on the scale"):
        gwet_ac2([[1, 8]], LIKERT_7)


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the example with missing values: nominal
# .743, ordinal .815, interval .849. Reproduced by irrCAC (afergadis/irrCAC test/unit/irrCAC/raw/
# test_krippendorff.py: 0.743 unweighted; kgwet/irrCAC vignettes/weighting.html: 0.84911 with quadratic weights)
# and by the `krippendorff` package (github pln-fing-udelar/fast-krippendorff, tests/test_krippendorff.py:
# ordinal 0.815 on this data; nominal 0.691358 and interval 0.810845 on the example of Wikipedia's article).
def test_alpha_matches_krippendorffs_worked_example():
    assert krippendorff_alpha(RAW_4_RATERS, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(RAW_4_RATERS, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(RAW_4_RATERS, "ordinal", SAFETY_5) == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(RAW_4_RATERS, "interval") == pytest.approx(0.84911, abs=5e-6)


def test_alpha_matches_the_wikipedia_example():
    # Three coders, 15 units (fast-krippendorff's reliability_data, one row per coder), as units.
    coders = [
        [None, None, None, None, None, 3, 4, 1, 2, 1, 1, 3, 3, None, 3],
        [1, None, 2, 1, 3, 3, 4, 3, None, None, None, None, None, None, None],
        [None, None, 2, 1, 3, 4, 4, None, 2, 1, 1, 3, 3, None, 4],
    ]
    units = [[value for value in unit if value is not None] for unit in zip(*coders, strict=True)]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.691358, abs=5e-7)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.810845, abs=5e-7)


def test_alpha_matches_the_hand_computed_case():
    # Units [1, 1], [1, 2], [3, 3]: o_11 = 2, o_12 = o_21 = 1, o_33 = 2; n_1 = 3, n_2 = 1, n_3 = 2, n = 6.
    units = [[1, 1], [1, 2], [3, 3]]
    # Nominal: observed sum o delta = 2, expected sum n_c n_k delta = 2 (3 + 6 + 2) = 22; 1 - 5 * 2 / 22 = 6/11.
    assert krippendorff_alpha(units, "nominal") == pytest.approx(6 / 11)
    # Ordinal: delta_12 = (3 + 1 - 4/2)^2 = 4, delta_13 = (3 + 1 + 2 - 5/2)^2 = 12.25, delta_23 = (1 + 2 - 3/2)^2
    # = 2.25. Observed 2 * 4 = 8; expected 2 (3 * 4 + 6 * 12.25 + 2 * 2.25) = 180; 1 - 5 * 8 / 180 = 7/9.
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(7 / 9)
    # An unused category between two used ones counts n_g = 0 and changes nothing.
    assert krippendorff_alpha([[1, 1], [1, 2], [4, 4]], "ordinal", (1, 2, 3, 4)) == pytest.approx(7 / 9)


def test_alpha_edge_cases_and_the_dashboards_interval_alpha():
    assert krippendorff_alpha([], "ordinal") is None
    assert krippendorff_alpha([[1], [2]], "nominal") is None
    assert krippendorff_alpha([[4, 4, 4], [4, 4]], "ordinal") is None  # no variation: undefined
    assert krippendorff_alpha([[1, 1], [5, 5, 5]], "ordinal") == 1.0
    with pytest.raises(ValueError, match="not on the scale"):
        krippendorff_alpha([[1, 6]], "ordinal", SAFETY_5)
    with pytest.raises(ValueError, match="needs numbers"):
        krippendorff_alpha([["a", "b"]], "interval")
    # insights' interval alpha is this one: its own hand case, 8/11.
    assert krippendorff_alpha_interval([[1, 1], [2, 3]]) == pytest.approx(8 / 11)


def test_wilson_shares_and_the_t_quantile_match_known_values():
    none_of_ten = share(0, 10)
    assert none_of_ten.rate == 0.0 and none_of_ten.low == 0.0
    assert none_of_ten.high == pytest.approx(0.2775, abs=1e-4)  # z^2 / (n + z^2) = 3.8415 / 13.8415
    half = share(5, 10)
    assert half.low == pytest.approx(0.2366, abs=1e-4) and half.high == pytest.approx(0.7634, abs=1e-4)
    assert share(0, 0).rate is None and share(0, 0).low is None
    assert student_t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-4)
    assert student_t_quantile(0.975, 4) == pytest.approx(2.7764, abs=1e-4)
    assert student_t_quantile(0.975, 11) == pytest.approx(2.2010, abs=1e-4)
    assert student_t_quantile(0.025, 30) == pytest.approx(-2.0423, abs=1e-4)
    assert student_t_quantile(0.975, 100_000) == pytest.approx(1.9600, abs=1e-4)


def test_the_mean_interval_matches_the_hand_value():
    # 1..5: mean 3, s^2 = 10/4, s / sqrt(5) = sqrt(0.5) = 0.70711; t(0.975, 4) = 2.77645; half 1.96324.
    mean = mean_with_interval([1, 2, 3, 4, 5])
    assert mean is not None and mean.mean == 3 and mean.n == 5
    assert mean.low == pytest.approx(1.03676, abs=1e-5) and mean.high == pytest.approx(4.96324, abs=1e-5)
    assert mean_with_interval([]) is None
    alone = mean_with_interval([4.0])
    assert alone is not None and alone.mean == 4.0 and alone.low is None


def test_ratings_are_oriented_to_the_policy():
    assert policy_oriented(2, policy_shown_first=True) == 2
    assert policy_oriented(2, policy_shown_first=False) == 6
    assert policy_oriented(4, policy_shown_first=False) == 4
    assert [likert_outcome(r) for r in LIKERT_7] == ["win"] * 3 + ["tie"] + ["loss"] * 3
    with pytest.raises(ValueError, match="7-point"):
        likert_outcome(0)


def test_win_tie_loss_counts_items_by_majority_and_ratings_one_by_one():
    items = [
        [1, 2, 7],  # win, win, loss: a win
        [3, 4, 5],  # win, tie, loss: no majority, a tie
        [6, 7, 4],  # loss, loss, tie: a loss
        [2, 3],  # win
        [2, 6],  # win, loss: split, a tie
        [],  # not rated: left out
    ]
    result = win_tie_loss(items)
    by_item = result.by_item
    assert (by_item.win.count, by_item.tie.count, by_item.loss.count, by_item.win.total) == (2, 2, 1, 5)
    assert by_item.win.rate == pytest.approx(0.4)
    by_rating = result.by_rating
    assert (by_rating.win.count, by_rating.tie.count, by_rating.loss.count, by_rating.win.total) == (6, 2, 5, 13)
    empty = win_tie_loss([])
    assert empty.by_item.win.rate is None and empty.by_rating.loss.total == 0


def test_safety_violations_refusals_and_the_mean_rating():
    items = [[1, 2, 5], [3, 4, 5], [2, 2, 2], [1, 5], [5, 5, 4]]
    violations = violation_rate(items)
    # Violating votes 2, 0, 3, 1, 0 of 3, 3, 3, 2, 3: items 1 and 3 by majority; item 4 splits and counts as no.
    assert (violations.by_item.count, violations.by_item.total, violations.split_items) == (2, 5, 1)
    assert (violations.by_vote.count, violations.by_vote.total) == (6, 14)
    # Item means 8/3, 4, 2, 3, 14/3: mean 49/15 over five items.
    mean = mean_rating(items)
    assert mean is not None and mean.n == 5 and mean.mean == pytest.approx(49 / 15)
    assert mean_rating([[], []]) is None
    with pytest.raises(ValueError, match="5-point"):
        violation_rate([[6]])
    refusals = false_refusal_rate([[True, True, False], [False, False, False], [True]])
    assert (refusals.by_item.count, refusals.by_item.total) == (2, 3)
    assert (refusals.by_vote.count, refusals.by_vote.total) == (3, 7)
    assert refusals.by_item.low == pytest.approx(share(2, 3).low)
