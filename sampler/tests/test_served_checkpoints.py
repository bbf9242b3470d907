"""The scale-out path: one OpenAI-compatible server per checkpoint, the registry saying which serves which.

Two real llama.cpp servers stand in for two `vllm serve` checkpoints.
"""

import pytest
from django.urls import reverse

from backend.batches.models import Batch, Response
from backend.batches.services.batches import batch_create
from backend.batches.services.prompts import prompt_create
from backend.checkpoints.models import Checkpoint
from backend.checkpoints.services import checkpoint_register
from sampler import services
from sampler.engines.openai_engine import OpenAIEngine
from sampler.sampling import batch_sample_prompts
from tests.llama_server import LlamaServer, llama_server

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("served")
    with llama_server(log_dir, alias="policy-a") as first, llama_server(log_dir, alias="policy-b") as second:
        yield first, second


def serve(client, checkpoint: Checkpoint, server: LlamaServer, name: str):
    url = reverse("checkpoint-detail", kwargs={"checkpoint_id": checkpoint.pk})
    return client.patch(url, {"serving_url": server.base_url, "served_model_name": name}, format="json")


def two_checkpoint_batch(name: str) -> tuple[Batch, list[Checkpoint]]:
    checkpoints = [checkpoint_register(name=f"{name}-{side}", path=f"/data/checkpoints/{side}")[0] for side in "ab"]
    batch, _ = batch_create(
        name=name,
        target_comparisons=4,
        created_by=None,
        checkpoint_ids=[c.pk for c in checkpoints],
        temperatures=[0.7, 1.0],
        max_new_tokens=8,
    )
    return batch, checkpoints


def test_each_checkpoint_is_sampled_by_the_server_the_registry_names(servers, batch_admin, client_for):
    batch, checkpoints = two_checkpoint_batch("served")
    client = client_for(batch_admin)
    for checkpoint, server, name in zip(checkpoints, servers, ("policy-a", "policy-b"), strict=True):
        assert serve(client, checkpoint, server, name).status_code == 200
    prompts = [prompt_create(text=f"Name one {thing}.", author=None)[0] for thing in ("fruit", "city", "tool", "bird")]
    engine = OpenAIEngine(concurrency=4)  # no base_url of its own: every request goes where the registry says
    pairs = batch_sample_prompts(batch=batch, prompts=prompts, engine=engine, engine_name="openai")
    assert len(pairs) == 4
    responses = Response.objects.filter(prompt__in=prompts)
    for checkpoint, server in zip(checkpoints, servers, strict=True):
        mine = responses.filter(checkpoint=checkpoint)
        assert mine.exists() and set(mine.values_list("device", flat=True)) == {server.base_url}
        # A server answered at least every response stored for its checkpoint (plus any identical-pair re-draw).
        assert server.completions_served() >= mine.count()
    assert set(responses.values_list("engine", "reproducibility")) == {("openai", "none")}
    assert all(text.strip() for text in responses.values_list("text", flat=True))


def test_a_checkpoint_no_server_serves_is_the_batchs_sampling_error(settings):
    settings.SAMPLER_ENGINE, settings.SAMPLER_ENGINE_OPTIONS = "openai", {}
    batch, _ = two_checkpoint_batch("unserved")
    prompt = prompt_create(text="Anyone there?", author=None)[0]
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.SAMPLING)
    assert services.batch_sample_chunk(batch_id=batch.pk, prompt_ids=[prompt.pk]) == 0
    batch.refresh_from_db()
    assert "register its serving_url" in batch.sampling_error


def test_serving_urls_are_checked_set_by_admins_only_and_idempotent(batch_admin, annotator, researcher, client_for):
    checkpoint = checkpoint_register(name="served-check", path="/data/checkpoints/c")[0]
    url = reverse("checkpoint-detail", kwargs={"checkpoint_id": checkpoint.pk})
    admin = client_for(batch_admin)
    for bad in ("ftp://serve-a/v1", "serve-a:8000", "http://"):
        refused = admin.patch(url, {"serving_url": bad}, format="json")
        assert refused.status_code == 400 and "serving_url" in refused.json(), bad
    body = {"serving_url": "http://serve-a:8000/v1/", "served_model_name": "policy-a"}
    first, again = admin.patch(url, body, format="json"), admin.patch(url, body, format="json")
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert first.json()["serving_url"] == "http://serve-a:8000/v1"
    assert client_for(annotator).patch(url, body, format="json").status_code == 403
    assert client_for(researcher).patch(url, body, format="json").status_code == 403
    assert admin.patch(url, {**body, "port": 1}, format="json").status_code == 400
    checkpoint.refresh_from_db()
    assert (checkpoint.serving_url, checkpoint.served_model_name) == ("http://serve-a:8000/v1", "policy-a")
