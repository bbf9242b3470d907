"""The admin: researchers start iterations from the add form (validated by the service); admins keep templates."""

import pytest
from django.test import Client

from loop.models import BatchTemplate, Iteration

pytestmark = pytest.mark.django_db


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_researcher_starts_an_iteration_from_the_admin_and_bad_input_is_shown(judged_batch, tiny_policy, researcher):
    client = _signed_in(researcher)
    form = {
        "batches": [judged_batch.pk],
        "base_policy": tiny_policy.pk,
        "methods": ["ppo"],
        "reward_builtin_backbone": "nope",
        "config": "{}",
    }
    refused = client.post("/admin/loop/iteration/add/", form)
    assert refused.status_code == 200 and b"Unknown built-in backbone" in refused.content
    assert not Iteration.objects.exists()

    created = client.post("/admin/loop/iteration/add/", {**form, "reward_builtin_backbone": "all-minilm-l6-v2"})
    assert created.status_code == 302, created.content[:2000]
    iteration = Iteration.objects.get()
    assert list(iteration.batches.all()) == [judged_batch] and iteration.methods == ["ppo"]
    page = client.get(f"/admin/loop/iteration/{iteration.pk}/change/")
    assert page.status_code == 200 and b"heldout_reward" in page.content  # the report, on the iteration's page


def test_an_admin_adds_and_changes_a_template(batch_admin):
    client = _signed_in(batch_admin)
    form = {
        "name": "weekly-safety",
        "focus": "safety",
        "size": "200",
        "overlap": "1",
        "temperatures": "[0.7, 1.0]",
        "max_new_tokens": "512",
        "guidelines": "",
        "prompt_source": "tags",
        "prompt_tags": "[]",
        "held_out_size": "1000",
        "active": "on",
    }
    refused = client.post("/admin/loop/batchtemplate/add/", form)
    assert refused.status_code == 200 and b"prompt_tags must be a non-empty list" in refused.content
    assert client.post("/admin/loop/batchtemplate/add/", {**form, "prompt_tags": '["adversarial"]'}).status_code == 302
    template = BatchTemplate.objects.get()
    changed = client.post(
        f"/admin/loop/batchtemplate/{template.pk}/change/", {**form, "prompt_tags": '["x"]', "size": "50"}
    )
    assert changed.status_code == 302
    template.refresh_from_db()
    assert (template.size, template.prompt_tags, template.created_by) == (50, ["x"], batch_admin)
