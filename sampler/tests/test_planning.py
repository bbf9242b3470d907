from collections import Counter

import pytest

from sampler.planning import PLAN_NEEDS_VARIETY, batch_design, plan_pairs, response_seed


def test_two_checkpoints_always_differ_and_meet_at_every_temperature_pair():
    pairs = plan_pairs(12, [7, 3], [0.7, 1.0])
    assert all(a.checkpoint_id == 3 and b.checkpoint_id == 7 for a, b in pairs)
    combinations = Counter((a.temperature, b.temperature) for a, b in pairs)
    assert combinations == {(0.7, 0.7): 3, (0.7, 1.0): 3, (1.0, 0.7): 3, (1.0, 1.0): 3}


def test_each_checkpoint_plays_each_temperature_equally_often():
    pairs = plan_pairs(54, [1, 2, 3], [0.6, 0.9, 1.2])
    shares = Counter(variant for pair in pairs for variant in pair)
    assert len(shares) == 9 and set(shares.values()) == {12}


def test_checkpoint_pairs_are_balanced():
    pairs = plan_pairs(30, [1, 2, 3], [1.0])
    shares = Counter((a.checkpoint_id, b.checkpoint_id) for a, b in pairs)
    assert set(shares) == {(1, 2), (1, 3), (2, 3)}
    assert set(shares.values()) == {10}


def test_a_plan_continues_from_what_the_batch_used_so_far():
    design = batch_design([1, 2], [0.7, 1.0])
    used = Counter({design[0]: 3, design[1]: 3, design[2]: 1})
    plan = plan_pairs(6, [1, 2], [0.7, 1.0], used=used)
    assert [used[pair] + plan.count(pair) for pair in design] == [4, 3, 3, 3]


def test_single_pairs_dealt_one_at_a_time_walk_the_whole_design():
    used: Counter[tuple] = Counter()
    for _ in range(20):
        (pair,) = plan_pairs(1, [1, 2], [0.7, 1.0], used=used)
        used[pair] += 1
    assert set(used.values()) == {5} and len(used) == 4


def test_ties_start_where_asked():
    design = batch_design([1, 2], [0.7, 1.0])
    assert plan_pairs(1, [1, 2], [0.7, 1.0], start=2) == [design[2]]
    assert plan_pairs(1, [1, 2], [0.7, 1.0], start=6) == [design[2]]


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
