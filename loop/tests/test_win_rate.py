"""Win rates and their Wilson intervals, and the human win rate of one checkpoint over another."""

import pytest

from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from loop.selectors import human_win_rate, leaderboard
from loop.win_rate import wilson
from tests.factories import make_batch, make_user


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
