"""Live pairs: the batch's quota applies to them, and a failure's engine error reaches staff, never its author."""

from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from backend.batches.models import Batch, Comparison, LivePair, Prompt
from backend.batches.services.annotations import annotation_submit, assignment_skip
from backend.batches.services.batches import batch_create, batch_open
from backend.checkpoints.services import checkpoint_register
from sampler import services
from sampler.engines.tiny import build_tiny_checkpoint

pytestmark = pytest.mark.django_db
MISSING = "/nowhere/live-pair-missing-checkpoint"


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("live-pair-policies")
    return [build_tiny_checkpoint(root / name, seed=seed, eos_boost=4.0) for name, seed in (("a", 1), ("b", 2))]


@pytest.fixture(autouse=True)
def engine(settings):
    settings.SAMPLER_ENGINE, settings.SAMPLER_ENGINE_OPTIONS = "transformers", {}


def writing_batch(paths, *, quota: int | None = None) -> Batch:
    """A batch whose annotators write the prompts, opened with no pair sampled (it needs none)."""
    checkpoints = [checkpoint_register(name=f"lp-{i}-{path}", path=str(path))[0] for i, path in enumerate(paths)]
    batch, _ = batch_create(
        name=f"writing-{quota}-{len(Batch.objects.all())}",
        target_comparisons=10,
        created_by=None,
        checkpoint_ids=[c.pk for c in checkpoints],
        temperatures=[0.7, 1.0],
        max_new_tokens=8,
        annotators_write_prompts=True,
        annotator_quota=quota,
    )
    return batch_open(batch=batch)


def ask(client, batch: Batch, capture, **body):
    """Ask for a live pair; its task runs on commit (eager Celery), then the handle is polled."""
    with capture(execute=True):
        response = client.post(reverse("live-pair-create", kwargs={"batch_id": batch.pk}), body, format="json")
    if response.status_code >= 400:
        return response, None
    return response, client.get(response.json()["poll_url"]).json()


def judge(annotator, polled: dict, key: str) -> None:
    annotation_submit(
        assignment_id=polled["assignment"]["id"],
        annotator=annotator,
        choice="a",
        strength="better",
        idempotency_key=key,
    )


def test_an_annotator_at_quota_gets_a_409_and_no_pair_is_sampled(
    tiny_dirs, client_for, annotator, django_capture_on_commit_callbacks
):
    batch = writing_batch(tiny_dirs, quota=2)
    client = client_for(annotator)
    _, first = ask(client, batch, django_capture_on_commit_callbacks, text="First?", client_key="q1")
    judge(annotator, first, "j1")
    _, second = ask(client, batch, django_capture_on_commit_callbacks, text="Second?", client_key="q2")
    assert second["status"] == "done"
    # Holding an unjudged pair counts: one judged plus one held reach the quota of two.
    refused, _ = ask(client, batch, django_capture_on_commit_callbacks, text="Third?")
    assert refused.status_code == 409, refused.content
    assert refused.json()["detail"] == services.LIVE_QUOTA_REACHED.format(quota=2)
    # A retried request for a pair the annotator already has still answers with it.
    again, polled = ask(client, batch, django_capture_on_commit_callbacks, text="Second?", client_key="q2")
    assert again.status_code == 200 and polled["id"] == second["id"]
    judge(annotator, second, "j2")
    refused, _ = ask(client, batch, django_capture_on_commit_callbacks, text="Third?")
    assert refused.status_code == 409 and "limit of 2 judgements" in refused.json()["detail"]
    assert LivePair.objects.filter(batch=batch).count() == 2
    assert Comparison.objects.filter(batch=batch).count() == 2
    assert not Prompt.objects.filter(text="Third?").exists(), "a refused prompt was kept"


def test_skips_do_not_count_toward_the_quota_and_other_annotators_are_not_held_back(
    tiny_dirs, client_for, annotator, django_capture_on_commit_callbacks
):
    from tests.factories import make_user

    batch = writing_batch(tiny_dirs, quota=1)
    client = client_for(annotator)
    _, skipped = ask(client, batch, django_capture_on_commit_callbacks, text="Skip me?")
    assignment_skip(
        assignment_id=skipped["assignment"]["id"], annotator=annotator, reason="identical", idempotency_key="k"
    )
    _, judged = ask(client, batch, django_capture_on_commit_callbacks, text="Judge me?")
    judge(annotator, judged, "j")
    assert ask(client, batch, django_capture_on_commit_callbacks, text="One more?")[0].status_code == 409
    other = client_for(make_user())
    assert ask(other, batch, django_capture_on_commit_callbacks, text="Mine?")[1]["status"] == "done"


def test_a_pair_whose_author_reached_the_quota_meanwhile_is_not_sampled(tiny_dirs, annotator):
    batch = writing_batch(tiny_dirs)
    queued: list[int] = []
    live_pair, _ = services.live_pair_request(batch=batch, annotator=annotator, enqueue=queued.append, text="Hi?")
    earlier, _ = services.live_pair_request(batch=batch, annotator=annotator, enqueue=queued.append, text="Before?")
    done = services.live_pair_sample(live_pair_id=earlier.pk)
    assert done.assignment_id is not None
    annotation_submit(
        assignment_id=done.assignment_id, annotator=annotator, choice="a", strength="better", idempotency_key="x"
    )
    # Before the sampler gets to the other pair, the quota (set meanwhile) is reached: nothing is sampled.
    Batch.objects.filter(pk=batch.pk).update(annotator_quota=1)
    failed = services.live_pair_sample(live_pair_id=live_pair.pk)
    assert failed.status == LivePair.Status.FAILED and failed.comparison_id is None
    assert not Comparison.objects.filter(batch=batch, prompt=live_pair.prompt).exists()
    assert services.live_pair_public_error(failed) == services.LIVE_QUOTA_REACHED.format(quota=1)


def test_a_failed_pair_tells_its_author_a_generic_reason_and_staff_the_engines_error(
    tiny_dirs, client_for, annotator, batch_admin, researcher, django_capture_on_commit_callbacks
):
    batch = writing_batch([tiny_dirs[0], MISSING])
    response, polled = ask(client_for(annotator), batch, django_capture_on_commit_callbacks, text="Hello?")
    assert response.status_code == 202 and polled["status"] == "failed"
    assert polled["error"] == services.LIVE_PAIR_FAILED and MISSING not in str(polled)
    stored = LivePair.objects.get(pk=polled["id"])
    assert MISSING in stored.error and "could not load checkpoint" in stored.error

    for staff in (batch_admin, researcher):
        detail = client_for(staff).get(reverse("batch-detail", kwargs={"batch_id": batch.pk})).json()
        assert detail["live_pairs"]["failed"] == 1 and detail["live_pairs"]["done"] == 0
        (failure,) = detail["live_pairs"]["recent_failures"]
        assert failure["id"] == stored.pk and failure["error"] == stored.error
        assert failure["requested_by"] == annotator.pk
    own = client_for(annotator).get(reverse("batch-detail", kwargs={"batch_id": batch.pk})).json()
    assert "live_pairs" not in own and MISSING not in str(own)

    browser = Client()
    browser.force_login(batch_admin)
    listing = browser.get("/admin/batches/livepair/")
    assert listing.status_code == 200 and MISSING in listing.content.decode()
    change = browser.get(f"/admin/batches/livepair/{stored.pk}/change/")
    assert change.status_code == 200 and MISSING in change.content.decode()
    assert browser.get("/admin/batches/livepair/add/").status_code == 403
    dashboard = browser.get(reverse("dashboard-batch", kwargs={"batch_id": batch.pk}))
    assert dashboard.status_code == 200 and MISSING in dashboard.content.decode()
