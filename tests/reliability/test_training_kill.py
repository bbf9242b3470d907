"""A reward-model run SIGKILLed mid-way (a worker dying) resumes from its last saved step when run again,
and registers exactly one checkpoint. The run trains a tiny Llama (sampler/engines/tiny.py) in a subprocess
with production settings on the test database and saves its state every CHECKPOINT_EVERY steps.
"""

import os
import signal
import subprocess
import sys

import pytest

from backend.accounts.roles import Role
from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from backend.checkpoints.models import Checkpoint, TrainingRun
from backend.checkpoints.services import checkpoint_register
from exports.services import export_build, export_create
from loop.services.training_runs import training_run_create, training_run_execute
from sampler.engines.tiny import build_tiny_checkpoint
from tests.factories import make_batch, make_user
from tests.reliability.harness import ROOT, database_environment, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CHECKPOINT_EVERY = 3
CONFIG = {"batch_size": 2, "micro_batch_size": 2, "max_length": 64, "epochs": 4, "checkpoint_every": CHECKPOINT_EVERY}
EXECUTE = "import django; django.setup(); from loop.services.training_runs import training_run_execute as run; "


def judged_export():
    batch = make_batch(comparisons=20, held_out_size=1000)
    annotator = make_user(Role.ANNOTATOR)
    for i in range(20):
        assignment = assignment_lease_next(batch=batch, annotator=annotator)
        assert assignment is not None
        choice = "a" if i % 3 else "b"
        annotation_submit(
            assignment_id=assignment.pk, annotator=annotator, choice=choice, strength="better", idempotency_key=f"k{i}"
        )
    run, _ = export_create(created_by=None, enqueue=lambda _: None)
    return export_build(run_id=run.pk)


def test_a_killed_reward_model_run_resumes_from_its_last_step_and_registers_one_checkpoint(settings, tmp_path):
    settings.EXPORTS_ROOT, settings.CHECKPOINTS_ROOT = tmp_path / "exports", tmp_path / "checkpoints"
    backbone, _ = checkpoint_register(name="tiny", path=str(build_tiny_checkpoint(tmp_path / "tiny")))
    run, _ = training_run_create(
        kind=TrainingRun.Kind.REWARD_HELPFULNESS,
        export_id=judged_export().pk,
        base_checkpoint_id=backbone.pk,
        created_by=None,
        enqueue=lambda _: None,
        config=CONFIG,
    )
    environment = database_environment() | {"STORAGE_ROOT": str(tmp_path)}
    log = (tmp_path / "run.log").open("wb")
    child = subprocess.Popen(
        [sys.executable, "-c", EXECUTE + f"run(run_id={run.pk})"], cwd=ROOT, env=environment, stdout=log, stderr=log
    )
    try:
        saved = wait_for(lambda: TrainingRun.objects.get(pk=run.pk).step > CHECKPOINT_EVERY, 300)
        assert saved, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    killed = TrainingRun.objects.get(pk=run.pk)
    assert killed.status == TrainingRun.Status.RUNNING and killed.step < killed.total_steps, "finished before the kill"

    steps: list[int] = []
    done = training_run_execute(run_id=run.pk, on_progress=lambda step, total, entry: steps.append(step))

    resumed_from = steps[0] - 1
    assert resumed_from >= CHECKPOINT_EVERY and resumed_from % CHECKPOINT_EVERY == 0, steps[:3]
    assert resumed_from <= killed.step
    assert done.status == TrainingRun.Status.DONE and done.step == done.total_steps
    assert Checkpoint.objects.filter(produced_by=f"training-run:{run.pk}").count() == 1
    assert done.output_checkpoint is not None
