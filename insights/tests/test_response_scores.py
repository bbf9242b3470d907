"""Scoring judged responses with a reward model: asked for over the API, kept until done, published again by the
re-enqueue sweep when the broker lost it."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from backend.checkpoints.models import CheckpointKind
from backend.checkpoints.services import checkpoint_register
from config.job_sweep import jobs_requeue_stale
from insights.models import ResponseScore, ScoringRequest
from insights.services import response_scores_compute, response_scores_request
from insights.tasks import response_scores_compute_task
from sampler.engines.tiny import build_tiny_checkpoint
from tests.factories import make_batch, make_user
from training.reward_model import load_backbone, save_reward_model

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    """A reward model (fresh scalar head) on a tiny backbone, as the reward trainer saves one."""
    model, tokenizer = load_backbone(build_tiny_checkpoint(tmp_path_factory.mktemp("rm-backbone"), seed=5))
    target = tmp_path_factory.mktemp("reward-model")
    save_reward_model(model, tokenizer, target, mean=0.0, std=1.0)
    return target


@pytest.fixture
def reward(reward_dir):
    return checkpoint_register(name="rm-helpful", path=str(reward_dir), kind=CheckpointKind.REWARD_HELPFULNESS)[0]


def judge(comparisons: int) -> None:
    """An annotator judges every comparison of a new helpfulness batch."""
    batch = make_batch(comparisons=comparisons)
    annotator = make_user(username=f"judge-{batch.pk}")
    for index in range(comparisons):
        assignment = assignment_lease_next(batch=batch, annotator=annotator)
        assert assignment is not None
        annotation_submit(
            assignment_id=assignment.pk, annotator=annotator, choice="a", strength="better", idempotency_key=f"k{index}"
        )


def test_a_request_is_kept_until_the_scores_are_stored(
    reward, client_for, researcher, django_capture_on_commit_callbacks
):
    judge(2)
    published: list[int] = []
    with django_capture_on_commit_callbacks(execute=True):
        queued = response_scores_request(checkpoint_id=reward.pk, enqueue=published.append)
    assert queued == {"checkpoint": reward.pk, "unscored": 4}
    assert published == [reward.pk]
    request = ScoringRequest.objects.get(checkpoint=reward)
    assert request.finished_at is None

    assert response_scores_compute(checkpoint_id=reward.pk) == 4
    assert ResponseScore.objects.filter(checkpoint=reward).count() == 4
    request.refresh_from_db()
    assert request.finished_at is not None
    # Nothing left to score: asking again queues nothing and reopens nothing.
    again = client_for(researcher).post(reverse("reward-scores"), {"checkpoint": reward.pk}, format="json")
    assert again.status_code == 202 and again.json()["unscored"] == 0
    assert ScoringRequest.objects.get(checkpoint=reward).finished_at is not None


def test_a_request_made_while_scoring_ran_stays_open(reward):
    judge(1)
    response_scores_request(checkpoint_id=reward.pk, enqueue=lambda _: None)
    # Asked again after the run began (its own task will score what came since): the run must not close it.
    ScoringRequest.objects.filter(checkpoint=reward).update(requested_at=timezone.now() + timedelta(minutes=5))
    response_scores_compute(checkpoint_id=reward.pk)
    assert ScoringRequest.objects.get(checkpoint=reward).finished_at is None


@pytest.mark.redis
def test_the_sweep_publishes_a_request_whose_publish_was_lost(reward, real_broker):
    judge(1)
    # The broker was down when it was asked for: the publish failed, the request stayed.
    response_scores_request(checkpoint_id=reward.pk, enqueue=lambda _: None)

    later = timezone.now() + timedelta(hours=1)
    assert jobs_requeue_stale(now=later) == [(response_scores_compute_task.name, (reward.pk,))]
    assert jobs_requeue_stale(now=later) == [], "published again although the broker holds it"

    response_scores_compute(checkpoint_id=reward.pk)
    with real_broker.connection_for_write() as connection:  # the worker took the message and finished
        connection.default_channel.client.flushdb()
    assert jobs_requeue_stale(now=later) == [], "a finished request was published"
