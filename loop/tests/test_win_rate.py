"""Win rates and their Wilson intervals, and the human win rate of one checkpoint over another."""

import pytest

from backend.batches.services.annotations import annotation_submit, assignment_lease_comparison, assignment_lease_next
from backend.batches.services.batches import batch_open
from backend.batches.services.comparisons import ResponseInput, comparison_create
from loop.selectors import human_win_rate, human_win_rate_by_temperature, leaderboard, leaderboard_by_temperature
from loop.win_rate import wilson
from tests.factories import make_batch, make_prompt, make_user


def test_wilson_interval_matches_the_textbook_values():
    rate = wilson(8, 10)
    assert rate.rate == 0.8
    assert rate.low == pytest.approx(0.4902, abs=1e-4) and rate.high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0).rate is None
    certain = wilson(5, 5)
    assert certain.high == 1.0 and certain.low is not None and certain.low < 1.0


@pytest.mark.django_db
def test_human_votes_give_the_win_rate_and_the_leaderboard():
    batch = make_batch(comparisons=6)
    first, second = batch.checkpoints.order_by("id")
    annotator = make_user()
    for i in range(6):
        assignment = assignment_lease_next(batch=batch, annotator=annotator)
        assert assignment is not None
        comparison = assignment.comparison
        # The first checkpoint's response (the comparison's first) wins 5 of 6.
        first_is_a = not assignment.swap
        wants_first = i < 5
        choice = "a" if first_is_a == wants_first else "b"
        annotation_submit(
            assignment_id=assignment.pk, annotator=annotator, choice=choice, strength="better", idempotency_key=str(i)
        )
        assert comparison.first_response.checkpoint == first
    rate = human_win_rate(new=first, previous=second)
    assert (rate.wins, rate.games) == (5, 6)
    assert rate.low is not None and rate.high is not None and rate.low < 5 / 6 < rate.high
    assert human_win_rate(new=second, previous=first).wins == 1
    board = leaderboard()
    assert [r.name for r in board] == [first.name, second.name]
    assert (board[0].wins, board[0].games) == (5, 6)


@pytest.mark.django_db
def test_answers_on_gold_comparisons_are_not_votes_for_a_model():
    batch = make_batch(comparisons=2)
    first, second = batch.checkpoints.order_by("id")
    annotator = make_user()
    for i in range(2):
        assignment = assignment_lease_next(batch=batch, annotator=annotator)
        assert assignment is not None
        choice = "b" if assignment.swap else "a"  # the first checkpoint's response each time
        annotation_submit(
            assignment_id=assignment.pk, annotator=annotator, choice=choice, strength="better", idempotency_key=str(i)
        )
    assert human_win_rate(new=first, previous=second).games == 2
    batch.comparisons.filter(pk=batch.comparisons.earliest("id").pk).update(is_gold=True)
    assert (human_win_rate(new=first, previous=second).wins, human_win_rate(new=first, previous=second).games) == (1, 1)
    assert leaderboard()[0].games == 1


def _judge_pairs(batch, pairs, annotator):
    """Pairs of (new temperature, previous temperature, new wins): stored, then leased and judged."""
    new, previous = batch.checkpoints.order_by("id")
    comparisons = [
        comparison_create(
            batch=batch,
            prompt=make_prompt(),
            first=ResponseInput(checkpoint=new, text=f"new {i}", temperature=new_t),
            second=ResponseInput(checkpoint=previous, text=f"previous {i}", temperature=previous_t),
        )[0]
        for i, (new_t, previous_t, _) in enumerate(pairs)
    ]
    batch_open(batch=batch)
    for i, (comparison, (_, _, new_wins)) in enumerate(zip(comparisons, pairs, strict=True)):
        assignment = assignment_lease_comparison(comparison=comparison, annotator=annotator)
        assert assignment is not None
        new_is_a = not assignment.swap
        annotation_submit(
            assignment_id=assignment.pk,
            annotator=annotator,
            choice="a" if new_is_a == new_wins else "b",
            strength="better",
            idempotency_key=f"s{i}",
        )
    return new, previous


@pytest.mark.django_db
def test_win_rates_and_ratings_per_temperature_stratum_show_a_win_that_came_from_temperature():
    batch = make_batch(comparisons=0, open_it=False)
    # The new checkpoint wins every vote where it ran cooler, and loses every vote at equal temperature.
    pairs = [(0.7, 1.0, True)] * 6 + [(0.7, 0.7, False)] * 3 + [(1.0, 1.0, False)] * 3
    new, previous = _judge_pairs(batch, pairs, make_user())
    assert (human_win_rate(new=new, previous=previous).wins, human_win_rate(new=new, previous=previous).games) == (
        6,
        12,
    )
    strata = human_win_rate_by_temperature(new=new, previous=previous)
    assert {key: (rate.wins, rate.games) for key, rate in strata.items()} == {
        "new T=0.7 / previous T=1": (6, 6),
        "new T=0.7 / previous T=0.7": (0, 3),
        "new T=1 / previous T=1": (0, 3),
    }
    assert human_win_rate_by_temperature(new=new, previous=previous, batch=make_batch(comparisons=1)) == {}
    boards = leaderboard_by_temperature()
    assert set(boards) == {"T=0.7", "T=1", "T=0.7 vs 1"}
    # At equal temperature the previous checkpoint rates higher, whatever the pooled board says.
    assert boards["T=0.7"][0].name == previous.name and boards["T=1"][0].name == previous.name
    assert boards["T=0.7 vs 1"][0].name == new.name
