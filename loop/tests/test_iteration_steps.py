"""The iteration state machine: a killed step resumes where it stood; a failed step marks the iteration failed,
and a retry continues from that step without redoing the finished ones."""

import shutil
from pathlib import Path

import pytest
from django.urls import reverse

from backend.checkpoints.models import TrainingRun
from loop.models import Iteration
from loop.services.iterations import iteration_create, iteration_run, iteration_step
from loop.tests.conftest import TINY_CONFIG

pytestmark = pytest.mark.django_db


class Killed(BaseException):
    """Stands for the worker process dying: not an Exception, so nothing records it."""


def _start(batch, policy, **options) -> Iteration:
    iteration, _ = iteration_create(
        created_by=None,
        enqueue=lambda _: None,
        base_policy_id=policy.pk,
        methods=options.pop("methods", ["ppo"]),
        batch_ids=[batch.pk],
        reward_backbone_id=policy.pk,
        config=options.pop("config", TINY_CONFIG),
    )
    return iteration


def _advance_to(iteration: Iteration, step: str) -> Iteration:
    while iteration.step != step:
        iteration = iteration_step(iteration_id=iteration.pk)
        assert iteration.status == Iteration.Status.RUNNING, iteration.error
    return iteration


def test_a_step_killed_mid_training_resumes_from_its_work_directory(judged_batch, tiny_policy):
    config = {**TINY_CONFIG, "ppo": {**TINY_CONFIG["ppo"], "iterations": 3, "checkpoint_every": 1, "eval_every": 3}}
    iteration = _advance_to(_start(judged_batch, tiny_policy, config=config), Iteration.Step.POLICY)
    reward_run = iteration.reward_helpfulness_run_id

    def kill_at_second_ppo_iteration(stage: str, step: int, total: int) -> None:
        if stage == "ppo" and step == 2:
            raise Killed

    with pytest.raises(Killed):
        iteration_step(iteration_id=iteration.pk, on_progress=kill_at_second_ppo_iteration)
    iteration.refresh_from_db()
    assert (iteration.status, iteration.step) == (Iteration.Status.RUNNING, Iteration.Step.POLICY)
    assert iteration.ppo_run is not None
    assert iteration.ppo_run.status == TrainingRun.Status.RUNNING and iteration.new_policy is None

    # The redelivered task: the same run picks up after iteration 1, its last resumable checkpoint.
    seen: list[int] = []

    def record_ppo_steps(stage: str, step: int, total: int) -> None:
        if stage == "ppo":
            seen.append(step)

    iteration = iteration_run(iteration_id=iteration.pk, on_progress=record_ppo_steps)
    assert (iteration.status, iteration.error) == (Iteration.Status.DONE, "")
    assert seen == [2, 3]
    assert iteration.reward_helpfulness_run_id == reward_run
    assert TrainingRun.objects.filter(kind="ppo").count() == 1
    assert iteration.ppo_run is not None and iteration.ppo_run.metrics["iterations_run"] == 3
    assert iteration.new_policy is not None and iteration.new_policy.parent == tiny_policy


def test_a_failed_step_marks_the_iteration_failed_and_a_retry_continues(
    judged_batch, tiny_policy, researcher, client_for, django_capture_on_commit_callbacks
):
    iteration = _advance_to(_start(judged_batch, tiny_policy, methods=["rejection_sampling"]), Iteration.Step.POLICY)
    policy_dir = Path(tiny_policy.path)
    shutil.move(policy_dir, policy_dir.with_name("elsewhere"))  # the checkpoint volume is gone

    iteration = iteration_step(iteration_id=iteration.pk)
    assert (iteration.status, iteration.step) == (Iteration.Status.FAILED, Iteration.Step.POLICY)
    assert iteration.error.startswith("policy: ")
    assert iteration_step(iteration_id=iteration.pk).status == Iteration.Status.FAILED  # stays failed until retried
    runs_before = set(TrainingRun.objects.values_list("id", flat=True))

    shutil.move(policy_dir.with_name("elsewhere"), policy_dir)
    url = reverse("iteration-retry", kwargs={"iteration_id": iteration.pk})
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(researcher).post(url)
    assert response.status_code == 202
    iteration.refresh_from_db()
    assert (iteration.status, iteration.step, iteration.error) == (Iteration.Status.DONE, Iteration.Step.DONE, "")
    assert set(TrainingRun.objects.values_list("id", flat=True)) == runs_before  # the failed run was resumed
    assert iteration.rejection_sampling_run is not None
    assert iteration.rejection_sampling_run.status == TrainingRun.Status.DONE
    assert iteration.new_policy == iteration.rejection_sampling_run.output_checkpoint

    # A finished iteration cannot be retried.
    assert client_for(researcher).post(url).status_code == 409
