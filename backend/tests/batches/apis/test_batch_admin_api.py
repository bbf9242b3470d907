"""Admins build a batch over the API: register checkpoints, create the batch, add pairs, open it."""

from typing import Any

import pytest
from django.urls import reverse

from backend.batches.models import Batch, Comparison
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db


def register(client, name):
    response = client.post(reverse("checkpoint-list"), {"name": name, "path": f"/m/{name}"}, format="json")
    assert response.status_code in (200, 201), response.content
    return response.json()["id"]


def test_a_batch_is_built_and_opened_over_the_api(client_for, batch_admin):
    client = client_for(batch_admin)
    latest, previous = register(client, "policy-w48"), register(client, "policy-w47")
    batch = client.post(
        reverse("batch-list"),
        {
            "name": "w48-helpfulness",
            "focus": "helpfulness",
            "checkpoints": [latest, previous],
            "temperatures": [0.8, 1.0],
            "target_comparisons": 2,
            "overlap": 2,
        },
        format="json",
    )
    assert batch.status_code == 201, batch.content
    batch_id = batch.json()["id"]
    prompts = [make_prompt("Explain rainbows."), make_prompt("Explain tides.")]
    for prompt in (prompts[0], prompts[1], prompts[1]):
        added = client.post(
            reverse("batch-comparisons", kwargs={"batch_id": batch_id}),
            {
                "prompt": prompt.pk,
                "first_response": {"checkpoint": latest, "text": "Light refracts.", "temperature": 0.8, "seed": 3},
                "second_response": {"checkpoint": previous, "text": "Magic.", "temperature": 1.0, "seed": 4},
            },
            format="json",
        )
        assert added.status_code in (200, 201), added.content
    assert Comparison.objects.filter(batch_id=batch_id).count() == 2, "a retried add made a duplicate"
    opened = client.post(reverse("batch-open", kwargs={"batch_id": batch_id}))
    assert opened.status_code == 200 and opened.json()["status"] == "open"
    detail = client.get(reverse("batch-detail", kwargs={"batch_id": batch_id})).json()
    assert detail["progress"]["comparisons"] == 2 and detail["progress"]["target_annotations"] == 4
    listed = client.get(reverse("batch-comparisons", kwargs={"batch_id": batch_id})).json()
    assert listed["results"][0]["first_response"]["checkpoint"] == latest


def test_bad_batch_settings_are_400s_naming_the_field(client_for, batch_admin):
    client = client_for(batch_admin)
    response = client.post(
        reverse("batch-list"), {"name": "x", "target_comparisons": 10, "temperatures": [5]}, format="json"
    )
    assert response.status_code == 400 and "temperatures" in response.json()
    response = client.post(reverse("batch-list"), {"name": "x", "target_comparisons": "many"}, format="json")
    assert response.status_code == 400 and "target_comparisons" in response.json()
    response = client.post(
        reverse("batch-list"), {"name": "x", "target_comparisons": 1, "checkpoints": [12345]}, format="json"
    )
    assert response.status_code == 400 and "checkpoints" in response.json()
    assert not Batch.objects.exists()


def test_opening_an_empty_batch_is_a_conflict_with_the_reason(client_for, batch_admin):
    client = client_for(batch_admin)
    batch_id = client.post(reverse("batch-list"), {"name": "empty", "target_comparisons": 1}, format="json").json()[
        "id"
    ]
    response = client.post(reverse("batch-open", kwargs={"batch_id": batch_id}))
    assert response.status_code == 409 and "no comparisons" in response.json()["detail"]


def test_a_checkpoint_name_cannot_be_reused_for_another_path(client_for, researcher):
    client = client_for(researcher)
    register(client, "rm-help")
    clash = client.post(reverse("checkpoint-list"), {"name": "rm-help", "path": "/elsewhere"}, format="json")
    assert clash.status_code == 400 and "name" in clash.json()
    bad_kind = client.post(reverse("checkpoint-list"), {"name": "z", "path": "/z", "kind": "oracle"}, format="json")
    assert bad_kind.status_code == 400 and "kind" in bad_kind.json()


def test_gold_rate_and_uncertainty_selection_are_set_over_the_api(client_for, batch_admin):
    client = client_for(batch_admin)
    reward = client.post(
        reverse("checkpoint-list"), {"name": "rm-w47", "path": "/m/rm-w47", "kind": "reward_helpfulness"}, format="json"
    ).json()["id"]
    policy = register(client, "policy-w48")
    body = {
        "name": "w48-uncertain",
        "checkpoints": [policy, register(client, "policy-w47")],
        "target_comparisons": 10,
        "gold_rate": 0.1,
        "selection": "uncertain",
        "selection_checkpoint": reward,
    }
    created = client.post(reverse("batch-list"), body, format="json")
    assert created.status_code == 201, created.content
    shown = client.get(reverse("batch-detail", kwargs={"batch_id": created.json()["id"]})).json()
    assert (shown["gold_rate"], shown["selection"], shown["selection_checkpoint"]) == (0.1, "uncertain", reward)
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"gold_rate": 0.51}, "gold_rate"),
        ({"selection": "newest"}, "selection"),
        ({"selection_checkpoint": None}, "selection_checkpoint"),
        ({"selection_checkpoint": policy}, "selection_checkpoint"),
    ]
    for change, field in refusals:
        refused = client.post(reverse("batch-list"), {**body, "name": f"bad-{field}", **change}, format="json")
        assert refused.status_code == 400 and field in refused.json(), (change, refused.content)
    assert Batch.objects.count() == 1
