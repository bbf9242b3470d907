"""Batch templates and the weekly job: one batch per template and ISO week, last week's closed, and a plan of the
newest policy and the one before it."""

import math
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from backend.batches.models import Batch, Comparison
from loop.models import Iteration, WeeklyBatch
from loop.services.templates import default_sampling_plan, template_create, weekly_batches_run
from sampler.services import batch_sample_chunk
from tests.factories import make_checkpoint, make_prompt

pytestmark = pytest.mark.django_db
MONDAY = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def _no_sampling(batch_id: int, prompt_ids: list[int]) -> None:
    """The sampler queue, left unserved: these tests are about which batches exist."""


def test_twice_in_a_week_makes_one_batch_and_next_week_closes_it(batch_admin):
    make_checkpoint("policy-old")
    make_checkpoint("policy-new")
    make_prompt("A pool prompt?")
    template, _ = template_create(created_by=batch_admin, name="help", size=5, overlap=2, temperatures=[0.8])
    template_create(created_by=batch_admin, name="paused", size=5, active=False)

    first = weekly_batches_run(now=MONDAY, enqueue=_no_sampling)
    again = weekly_batches_run(now=MONDAY + timedelta(days=3), enqueue=_no_sampling)
    assert first == again and len(first) == 1
    batch = Batch.objects.get(pk=first[0].batch_id)
    assert (batch.name, batch.iso_week, batch.target_comparisons, batch.overlap) == ("help-2026-W48", "2026-W48", 5, 2)
    assert (batch.opens_at, batch.closes_at) == (MONDAY, MONDAY + timedelta(days=7))
    assert batch.status == Batch.Status.SAMPLING
    assert Batch.objects.count() == 1

    (following,) = weekly_batches_run(now=MONDAY + timedelta(days=7), enqueue=_no_sampling)
    assert following.iso_week == "2026-W49"
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CLOSED
    assert WeeklyBatch.objects.filter(template=template).count() == 2


def test_the_default_plan_is_the_newest_policy_and_the_one_before_it():
    oldest, older, newest = make_checkpoint("p1"), make_checkpoint("p2"), make_checkpoint("p3")
    make_checkpoint("rm", kind="reward_helpfulness")
    assert default_sampling_plan() == [newest, older]
    # A policy the loop made is compared with the policy it was trained from (not an intermediate of its run).
    made = make_checkpoint("p4")
    Iteration.objects.create(
        base_policy=oldest, new_policy=made, status="done", step="done", reward_builtin_backbone="all-minilm-l6-v2"
    )
    assert default_sampling_plan() == [made, oldest]


def test_the_weekly_job_is_registered_with_beat():
    task = PeriodicTask.objects.get(name="loop-weekly-batches")
    assert task.task == "backend.loop.tasks.weekly_batches" and task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "0", "1")


def test_admins_create_templates_over_the_api_with_clear_errors(batch_admin, client_for):
    client = client_for(batch_admin)
    url = reverse("batch-template-list")
    body = {"name": "safety-weekly", "focus": "safety", "size": 100, "temperatures": [0.7, 1.0]}
    created = client.post(url, body, format="json")
    assert created.status_code == 201, created.content
    assert client.post(url, body, format="json").status_code == 200  # a retried create
    assert client.post(url, {**body, "size": 50}, format="json").json() == {
        "name": ["A template with this name exists with different settings."]
    }
    assert "size" in client.post(url, {**body, "name": "x", "size": 0}, format="json").json()
    tags = client.post(url, {**body, "name": "y", "prompt_source": "tags"}, format="json")
    assert tags.status_code == 400 and "prompt_tags" in tags.json()
    assert "temperatures" in client.post(url, {**body, "name": "z", "temperatures": [3]}, format="json").json()
    assert [t["name"] for t in client.get(url).json()] == ["safety-weekly"]


def test_a_weekly_batch_opened_after_its_first_chunk_holds_out_its_fraction_of_every_chunk(
    batch_admin, tiny_policy, django_capture_on_commit_callbacks, settings
):
    settings.SAMPLER_CHUNK_PROMPTS = 16
    prompts = 160
    for i in range(prompts):
        make_prompt(f"Weekly question {i}: how do I say thanks?")
    template_create(created_by=batch_admin, name="weekly", size=prompts, max_new_tokens=2, temperatures=[0.7, 1.3])
    chunks: list[tuple[int, list[int]]] = []
    with django_capture_on_commit_callbacks(execute=True):
        (weekly,) = weekly_batches_run(now=MONDAY, enqueue=lambda batch_id, ids: chunks.append((batch_id, ids)))
    assert len(chunks) == prompts // 16
    batch_sample_chunk(batch_id=chunks[0][0], prompt_ids=chunks[0][1])
    weekly_batches_run(now=MONDAY + timedelta(hours=1), enqueue=_no_sampling)
    batch = Batch.objects.get(pk=weekly.batch_id)
    assert batch.status == Batch.Status.OPEN
    for batch_id, ids in chunks[1:]:
        batch_sample_chunk(batch_id=batch_id, prompt_ids=ids)
    weekly_batches_run(now=MONDAY + timedelta(days=7), enqueue=_no_sampling)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CLOSED
    pairs = Comparison.objects.filter(batch=batch)
    assert pairs.count() == prompts
    held_out = pairs.filter(is_held_out=True).count()
    # Within 3.5 binomial deviations of 10% of all 160, not 10% of the first chunk's 16.
    assert abs(held_out - prompts * batch.held_out_fraction) <= 3.5 * math.sqrt(prompts * 0.1 * 0.9)
