"""Reward-model runs in the platform: from a real export to a registered checkpoint with its lineage."""

import json
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from backend.accounts.roles import Role
from backend.batches.models import Comparison
from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from backend.checkpoints.models import Checkpoint, CheckpointKind, TrainingRun
from backend.checkpoints.services import checkpoint_register
from backend.errors import Conflict, InvalidInput
from exports.models import ExportRun
from exports.services import export_build, export_create
from loop.services.training_runs import training_run_create, training_run_execute, training_run_output_dir
from sampler.engines.tiny import build_tiny_checkpoint
from tests.factories import make_batch, make_user

pytestmark = pytest.mark.django_db
SMALL = {"batch_size": 8, "micro_batch_size": 4, "max_length": 64, "learning_rate": 1e-4}


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.EXPORTS_ROOT = tmp_path / "exports"
    settings.CHECKPOINTS_ROOT = tmp_path / "checkpoints"


@pytest.fixture
def export() -> ExportRun:
    batch = make_batch(comparisons=20, held_out_size=1000, held_out_fraction=0.5)
    annotator = make_user(Role.ANNOTATOR)
    strengths = ["significantly_better", "better", "slightly_better", "negligibly_better_or_unsure"]
    for i in range(20):
        assignment = assignment_lease_next(batch=batch, annotator=annotator)
        assert assignment is not None
        annotation_submit(
            assignment_id=assignment.pk,
            annotator=annotator,
            choice="a" if assignment.swap else "b",
            strength=strengths[i % 4],
            idempotency_key=f"x{i}",
        )
    run, _ = export_create(created_by=None, enqueue=lambda _: None, margin_scheme="small")
    return export_build(run_id=run.pk)


def start(export, **options):
    run, _ = training_run_create(
        kind=options.pop("kind", "reward_helpfulness"),
        export_id=export.pk,
        created_by=None,
        enqueue=lambda _: None,
        config=options.pop("config", SMALL),
        **options,
    )
    return run


def test_a_real_run_on_minilm_from_a_real_export_registers_a_reward_checkpoint(export):
    run = training_run_execute(run_id=start(export, builtin_backbone="all-minilm-l6-v2").pk)
    assert run.status == TrainingRun.Status.DONE and run.step == run.total_steps > 0
    checkpoint = run.output_checkpoint
    assert checkpoint is not None
    assert checkpoint.kind == CheckpointKind.REWARD_HELPFULNESS and checkpoint.produced_by == f"training-run:{run.pk}"
    assert (Path(checkpoint.path) / "model.safetensors").exists()
    held_out = Comparison.objects.filter(is_held_out=True).count()
    assert run.metrics["eval"]["pairs"] == held_out > 0 and "train/loss" in run.log_tail


def test_lineage_points_at_the_backbone_checkpoint(export, tmp_path):
    base = checkpoint_register(name="tiny-policy", path=str(build_tiny_checkpoint(tmp_path / "tiny")))[0]
    run = training_run_execute(run_id=start(export, base_checkpoint_id=base.pk, kind="reward_safety").pk)
    assert run.output_checkpoint is not None
    assert run.output_checkpoint.parent == base and run.output_checkpoint.kind == CheckpointKind.REWARD_SAFETY


def test_a_failed_run_registers_nothing_and_leaves_no_model(export, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    base = checkpoint_register(name="broken", path=str(broken))[0]
    run = start(export, base_checkpoint_id=base.pk)
    with pytest.raises(Exception):  # noqa: B017 - whatever the loader raises, the run must record it
        training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and run.error
    assert not Checkpoint.objects.filter(kind=CheckpointKind.REWARD_HELPFULNESS).exists()
    assert not training_run_output_dir(run).exists()


def test_runs_are_validated_before_anything_is_queued(export):
    queued = ExportRun.objects.create(formats=["jsonl"])
    with pytest.raises(Conflict, match="not finished"):
        start(queued, builtin_backbone="all-minilm-l6-v2")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"builtin_backbone": "gpt-99"}, "backbone"),
        ({}, "backbone"),
        ({"builtin_backbone": "all-minilm-l6-v2", "config": {"lr": 1}}, "config"),
        ({"builtin_backbone": "all-minilm-l6-v2", "config": {"batch_size": "big"}}, "config"),
        ({"builtin_backbone": "all-minilm-l6-v2", "kind": "policy"}, "kind"),
    ]
    for options, field in cases:
        with pytest.raises(InvalidInput) as error:
            start(export, **options)
        assert error.value.field == field
    assert not TrainingRun.objects.exists()


def test_researchers_start_runs_over_the_api(export, client_for, django_capture_on_commit_callbacks):
    researcher = client_for(make_user(Role.RESEARCHER))
    body = {"kind": "reward_helpfulness", "export": export.pk, "builtin_backbone": "all-minilm-l6-v2", "config": SMALL}
    with django_capture_on_commit_callbacks(execute=True):
        response = researcher.post(reverse("training-run-list"), body, format="json")
    assert response.status_code == 202, response.content
    detail = researcher.get(reverse("training-run-detail", kwargs={"run_id": response.json()["id"]})).json()
    assert detail["status"] == "done" and detail["progress"] == 1.0 and detail["output_checkpoint"]
    bad = researcher.post(reverse("training-run-list"), {**body, "export": 99999}, format="json")
    assert bad.status_code == 400 and "export" in bad.json()


def test_a_researcher_starts_a_run_from_the_admin(export, django_capture_on_commit_callbacks):
    from django.test import Client

    make_user(Role.RESEARCHER, username="res", password="a-long-password")
    client = Client()
    assert client.login(username="res", password="a-long-password")
    form = {"kind": "reward_helpfulness", "export": export.pk, "builtin_backbone": "all-minilm-l6-v2"}
    bad = client.post("/admin/checkpoints/trainingrun/add/", {**form, "config": '{"lr": 1}'})
    assert bad.status_code == 200 and b"Unknown setting" in bad.content and not TrainingRun.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/checkpoints/trainingrun/add/", {**form, "config": json.dumps(SMALL)}, follow=True)
    assert TrainingRun.objects.get().status == TrainingRun.Status.DONE
