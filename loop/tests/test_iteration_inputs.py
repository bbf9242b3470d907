"""Starting an iteration: bad input is a 400 naming the field, nothing is written; a retried start is one."""

import pytest
from django.urls import reverse

from loop.models import Iteration
from tests.factories import make_batch, make_checkpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def body(judged_batch, tiny_policy):
    return {
        "batches": [judged_batch.pk],
        "base_policy": tiny_policy.pk,
        "methods": ["ppo"],
        "reward_builtin_backbone": "all-minilm-l6-v2",
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"methods": []}, "methods"),
        ({"methods": ["sft"]}, "methods"),
        ({"export": 999}, "batches"),
        ({"batches": []}, "batches"),
        ({"batches": [999]}, "batches"),
        ({"base_policy": 999}, "base_policy"),
        ({"reward_builtin_backbone": "gpt-5"}, "reward_backbone"),
        ({"reward_builtin_backbone": "", "reward_backbone": None}, "reward_backbone"),
        ({"config": {"sft": {}}}, "config"),
        ({"config": {"ppo": {"kl_beta": "high"}}}, "config.ppo"),
        ({"config": {"ppo": {"no_such_setting": 1}}}, "config.ppo"),
        ({"config": {"reward": {"learning_rate": -1.0}}}, "config.reward"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(body, researcher, client_for, change, field):
    response = client_for(researcher).post(reverse("iteration-list"), {**body, **change}, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not Iteration.objects.exists()


def test_unannotated_batches_and_reward_checkpoints_as_policy_are_refused(body, researcher, client_for):
    client = client_for(researcher)
    fresh = client.post(reverse("iteration-list"), {**body, "batches": [make_batch().pk]}, format="json")
    assert fresh.json() == {"batches": ["The batches have no judged annotations yet; annotate them before training."]}
    reward = make_checkpoint(kind="reward_helpfulness")
    assert (
        "base_policy"
        in client.post(reverse("iteration-list"), {**body, "base_policy": reward.pk}, format="json").json()
    )


def test_a_retried_start_with_the_same_key_is_one_iteration(body, researcher, client_for):
    client = client_for(researcher)
    first = client.post(reverse("iteration-list"), {**body, "client_key": "k"}, format="json")
    second = client.post(reverse("iteration-list"), {**body, "client_key": "k"}, format="json")
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"] and Iteration.objects.count() == 1
    assert first.json()["status"] == "queued" and first.json()["progress"] == 0.0
