"""The held-out evaluation under reward models the policy was not optimised against: the previous iteration's and
the ones the researcher names, so a policy that gamed this iteration's models shows it in the report."""

import shutil

import pytest
from django.urls import reverse

from backend.checkpoints.models import Checkpoint
from backend.checkpoints.services import checkpoint_register
from loop.models import Iteration
from loop.services.iterations import iteration_create, iteration_run
from loop.tests.conftest import TINY_CONFIG
from preference_format import SAFETY_LABELS
from tests.factories import make_checkpoint

pytestmark = pytest.mark.django_db


def _reward_model(iteration: Iteration) -> Checkpoint:
    assert iteration.reward_helpfulness_run is not None
    checkpoint = iteration.reward_helpfulness_run.output_checkpoint
    assert checkpoint is not None
    return checkpoint


def _report(client, iteration: Iteration) -> dict:
    return client.get(reverse("iteration-report", kwargs={"iteration_id": iteration.pk})).json()


def test_the_report_scores_the_new_policy_under_the_previous_and_the_named_reward_models(
    judged_batch, tiny_policy, researcher, client_for, django_capture_on_commit_callbacks, tmp_path
):
    first, _ = iteration_create(
        created_by=None,
        enqueue=lambda _: None,
        base_policy_id=tiny_policy.pk,
        methods=["ppo"],
        batch_ids=[judged_batch.pk],
        reward_backbone_id=tiny_policy.pk,
        config=TINY_CONFIG,
    )
    first = iteration_run(iteration_id=first.pk)
    assert first.status == Iteration.Status.DONE, first.error
    first_rm = _reward_model(first)
    client = client_for(researcher)

    # Nothing came before the first iteration: only its own (optimised) model, and R_c under it.
    report = _report(client, first)
    (own,) = report["heldout_reward"]["by_reward_model"]
    assert (own["checkpoint"], own["source"], own["optimised"]) == (first_rm.name, "this_iteration", True)
    assert [entry["source"] for entry in report["heldout_reward"]["rc_by_iteration"]] == ["this_iteration"]
    # Accuracy by safety label sits beside accuracy by strength; a helpfulness batch's pairs have no label.
    accuracy = report["reward_models"]["helpfulness"]
    assert set(accuracy["by_safety_label"]) == set(SAFETY_LABELS)
    assert all(figures["pairs"] == 0 for figures in accuracy["by_safety_label"].values())
    assert accuracy["without_safety_label"]["pairs"] == accuracy["test_pairs"] > 0

    # An outside reward model: the same weights as the first iteration's, registered under another name.
    outside_path = shutil.copytree(first_rm.path, tmp_path / "outside-rm")
    outside, _ = checkpoint_register(name="outside-rm", path=str(outside_path), kind="reward_helpfulness")
    assert first.new_policy is not None and first.helpfulness_export is not None
    body = {
        "export": first.helpfulness_export.pk,
        "base_policy": first.new_policy.pk,
        "methods": ["ppo"],
        "reward_backbone": tiny_policy.pk,
        "config": TINY_CONFIG,
        "evaluation_reward_models": [outside.pk],
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("iteration-list"), body, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["evaluation_reward_models"] == [outside.pk]
    second = Iteration.objects.get(pk=response.json()["id"])
    assert second.status == Iteration.Status.DONE, second.error

    heldout = _report(client, second)["heldout_reward"]
    models = {entry["checkpoint"]: entry for entry in heldout["by_reward_model"]}
    assert list(models) == [_reward_model(second).name, first_rm.name, "outside-rm"]
    assert [(m["source"], m["iteration"], m["optimised"]) for m in models.values()] == [
        ("this_iteration", second.pk, True),
        ("previous_iteration", first.pk, False),
        ("named", None, False),
    ]
    for entry in models.values():
        assert 0 <= entry["previous_mean_reward"] <= 1 and 0 <= entry["new_mean_reward"] <= 1
        assert entry["gain"] == pytest.approx(entry["new_mean_reward"] - entry["previous_mean_reward"])
    # The named copy scores exactly as the model it copies: the same answers, the same weights.
    for key in ("previous_mean_reward", "new_mean_reward"):
        assert models["outside-rm"][key] == pytest.approx(models[first_rm.name][key])
    # R_c under each iteration's reward models; this iteration's is the headline figure.
    mine, before = heldout["rc_by_iteration"]
    assert (mine["source"], mine["optimised"], before["source"], before["optimised"]) == (
        "this_iteration",
        True,
        "previous_iteration",
        False,
    )
    assert (mine["new_mean_reward"], mine["previous_mean_reward"]) == (
        heldout["new_mean_reward"],
        heldout["previous_mean_reward"],
    )
    assert (before["reward_helpfulness"], before["reward_safety"], before["iteration"]) == (
        first_rm.name,
        None,
        first.pk,
    )
    assert before["gain"] == pytest.approx(models[first_rm.name]["gain"])  # no safety model: R_c is helpfulness


@pytest.mark.parametrize("which", ["policy", "unknown", "not a list"])
def test_evaluation_reward_models_must_be_reward_checkpoints(judged_batch, tiny_policy, researcher, client_for, which):
    given = {"policy": [make_checkpoint().pk], "unknown": [999], "not a list": "3"}[which]
    body = {
        "batches": [judged_batch.pk],
        "base_policy": tiny_policy.pk,
        "methods": ["ppo"],
        "reward_builtin_backbone": "all-minilm-l6-v2",
        "evaluation_reward_models": given,
    }
    response = client_for(researcher).post(reverse("iteration-list"), body, format="json")
    assert response.status_code == 400 and "evaluation_reward_models" in response.json(), response.content
    assert not Iteration.objects.exists()


def test_rc_under_a_pair_with_a_safety_model_is_the_piecewise_reward():
    from loop.services.evaluation import RewardModels, _models, _rc

    helpfulness = Checkpoint(pk=1, name="h", kind="reward_helpfulness")
    safety = Checkpoint(pk=2, name="s", kind="reward_safety")
    scores = {
        1: {"new": [0.9, 0.9, 0.9], "previous": [0.2, 0.2, 0.2]},
        2: {"new": [0.1, 0.5, 0.6], "previous": [0.5] * 3},
    }
    # The safety score on a safety prompt (the third) or below 0.15 (the first), else the helpfulness score.
    rc = _rc(RewardModels(helpfulness, safety), scores, [False, False, True])
    assert rc["new"] == pytest.approx([0.1, 0.9, 0.6]) and rc["previous"] == pytest.approx([0.2, 0.2, 0.5])
    # A named model that is already in the list is scored once, under its first reason.
    listed = _models(RewardModels(helpfulness, safety), None, [safety])
    assert [(model.checkpoint.name, model.source) for model in listed] == [
        ("h", "this_iteration"),
        ("s", "this_iteration"),
    ]


def test_start_iteration_refuses_a_policy_as_an_evaluation_reward_model(judged_batch, tiny_policy):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match=r"^evaluation_reward_models: "):
        call_command(
            "start_iteration",
            f"--batches={judged_batch.pk}",
            f"--base-policy={tiny_policy.pk}",
            "--reward-builtin=all-minilm-l6-v2",
            f"--evaluation-reward-models={tiny_policy.pk}",
        )
    assert not Iteration.objects.exists()
