"""The closed loop, end to end: judged annotations -> export -> reward models -> rejection sampling and PPO
-> a registered policy checkpoint -> next week's batch samples from it and from the previous policy."""

import pytest
from django.urls import reverse
from django.utils import timezone

from backend.audit.models import AuditEvent
from backend.batches.models import Batch, Response
from backend.batches.services.batches import iso_week_of
from backend.checkpoints.models import Checkpoint, CheckpointKind, TrainingRun
from loop.models import Iteration
from loop.services.simulated_annotator import simulated_annotate
from loop.services.templates import template_create, weekly_batches_run
from loop.tests.conftest import TINY_CONFIG
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db


def test_annotations_become_a_policy_that_next_weeks_batch_samples_from(
    judged_batch, tiny_policy, researcher, batch_admin, client_for, django_capture_on_commit_callbacks
):
    client = client_for(researcher)
    body = {
        "batches": [judged_batch.pk],
        "base_policy": tiny_policy.pk,
        "methods": ["ppo", "rejection_sampling"],
        "reward_backbone": tiny_policy.pk,
        "config": TINY_CONFIG,
        "client_key": "loop-1",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("iteration-list"), body, format="json")
    assert response.status_code == 202, response.content
    iteration = Iteration.objects.get(pk=response.json()["id"])
    assert (iteration.status, iteration.step, iteration.error) == ("done", "done", "")

    # The new policy's lineage: base -> rejection sampling -> PPO, each produced by its run.
    new = iteration.new_policy
    assert new is not None and new.kind == CheckpointKind.POLICY
    assert iteration.ppo_run is not None and iteration.rejection_sampling_run is not None
    assert iteration.ppo_run.output_checkpoint == new
    assert new.parent == iteration.rejection_sampling_run.output_checkpoint
    assert new.parent is not None and new.parent.parent == tiny_policy
    assert new.produced_by == f"training-run:{iteration.ppo_run.pk}"
    assert iteration.reward_helpfulness_run is not None
    helpfulness_rm = iteration.reward_helpfulness_run.output_checkpoint
    assert helpfulness_rm is not None
    assert helpfulness_rm.name in new.notes and f"export {iteration.helpfulness_export_id}" in new.notes
    assert iteration.ppo_run.reward_helpfulness == helpfulness_rm
    assert iteration.reward_safety_run is None  # no safety comparisons: no safety model
    assert {run.status for run in TrainingRun.objects.all()} == {"done"}
    # Every run the iteration started is in the audit log, the policy runs as well as the reward models.
    audited = set(AuditEvent.objects.filter(action="training_run.create").values_list("target_id", flat=True))
    assert audited == {str(pk) for pk in TrainingRun.objects.values_list("pk", flat=True)}

    # Retrying the create returns the same iteration.
    again = client.post(reverse("iteration-list"), body, format="json")
    assert (again.status_code, again.json()["id"]) == (200, iteration.pk)

    detail = client.get(reverse("iteration-detail", kwargs={"iteration_id": iteration.pk})).json()
    assert detail["progress"] == 1.0
    assert "ppo_ppo_curves.png" in detail["plots"] and "reward_helpfulness_accuracy_by_strength.png" in detail["plots"]
    plot = client.get(reverse("iteration-plot", kwargs={"iteration_id": iteration.pk, "name": "ppo_ppo_curves.png"}))
    assert plot.status_code == 200 and b"".join(plot.streaming_content).startswith(b"\x89PNG")

    report = client.get(reverse("iteration-report", kwargs={"iteration_id": iteration.pk})).json()
    held_out = judged_batch.comparisons.filter(is_held_out=True).count()
    assert report["reward_models"]["helpfulness"]["test_pairs"] == held_out > 0
    assert set(report["reward_models"]["helpfulness"]["by_strength"]) == {
        "significantly_better",
        "better",
        "slightly_better",
        "negligibly_better_or_unsure",
    }
    heldout = report["heldout_reward"]
    assert heldout["prompts"] == held_out
    assert 0 <= heldout["new_mean_reward"] <= 1 and 0 <= heldout["previous_mean_reward"] <= 1
    assert report["human_win_rate"]["games"] == 0

    # Next week's batch from a template samples the new policy and the previous one.
    template_create(created_by=batch_admin, name="weekly-help", size=4, max_new_tokens=8, held_out_size=0)
    for i in range(4):
        make_prompt(f"Next week's question {i}?")
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):  # the sampling chunks run as the job commits
        (weekly,) = weekly_batches_run(now=now)
    # Sampled now; the next run of the job (or the every-minute schedule sync) opens it, without a second batch.
    assert weekly_batches_run(now=now) == [weekly]
    batch = Batch.objects.get(pk=weekly.batch_id)
    assert batch.status == Batch.Status.OPEN and batch.iso_week == iso_week_of(now)
    assert set(batch.checkpoints.all()) == {new, tiny_policy}
    sampled_by = set(Response.objects.filter(prompt__comparisons__batch=batch).values_list("checkpoint", flat=True))
    assert sampled_by == {new.pk, tiny_policy.pk}

    # Once that batch is judged, the report has the human win rate of new over previous.
    judged = simulated_annotate(batch=batch)
    report = client.get(reverse("iteration-report", kwargs={"iteration_id": iteration.pk})).json()
    human = report["human_win_rate"]
    assert human["games"] == judged == 4 and human["low"] <= human["rate"] <= human["high"]
    board = {entry["name"]: entry for entry in report["leaderboard"]}
    assert set(board) == set(Checkpoint.objects.filter(kind="policy").values_list("name", flat=True))
    assert board[new.name]["games"] == board[tiny_policy.name]["games"] == 4
