from collections import Counter

import pytest

from sampler.planning import PLAN_NEEDS_VARIETY, plan_pairs, response_seed


def test_two_checkpoints_always_differ_and_temperatures_vary():
    pairs = plan_pairs(10, [7, 3], [0.7, 1.0])
    assert all(a.checkpoint_id != b.checkpoint_id for a, b in pairs)
    assert {a.temperature for a, _ in pairs} == {0.7, 1.0}
    assert all(a.temperature != b.temperature for a, b in pairs)


def test_checkpoint_pairs_are_balanced():
    pairs = plan_pairs(30, [1, 2, 3], [1.0])
    shares = Counter((a.checkpoint_id, b.checkpoint_id) for a, b in pairs)
    assert set(shares) == {(1, 2), (1, 3), (2, 3)}
    assert set(shares.values()) == {10}


def test_one_checkpoint_pairs_two_different_temperatures():
    pairs = plan_pairs(6, [5], [0.6, 0.9, 1.2])
    assert all(a.checkpoint_id == b.checkpoint_id == 5 for a, b in pairs)
    assert all(a.temperature < b.temperature for a, b in pairs)
    assert Counter((a.temperature, b.temperature) for a, b in pairs) == {(0.6, 0.9): 2, (0.6, 1.2): 2, (0.9, 1.2): 2}


@pytest.mark.parametrize(("checkpoints", "temperatures"), [([1], [0.7]), ([], [0.7, 1.0]), ([1, 2], [])])
def test_a_plan_without_variety_is_refused(checkpoints, temperatures):
    with pytest.raises(ValueError, match=PLAN_NEEDS_VARIETY):
        plan_pairs(3, checkpoints, temperatures)


def test_seeds_are_stable_and_distinct():
    assert response_seed(1, 2, "a") == response_seed(1, 2, "a")
    assert response_seed(1, 2, "a") != response_seed(1, 2, "b")
    assert 0 <= response_seed("x") < 2**63
