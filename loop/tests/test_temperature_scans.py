"""Temperature scans as a checkpoint action and an iteration step (Llama 2, Figure 8): the stored curve, its plot, the
best temperature reaching rejection sampling and a batch template when asked; and rejection sampling's pool of the
best samples that earlier iterations kept."""

import json
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from backend.checkpoints.models import Checkpoint, CheckpointKind
from backend.checkpoints.services import checkpoint_register
from loop.models import Iteration, TemperatureScan
from loop.services.iterations import iteration_create, iteration_run
from loop.services.templates import template_create
from loop.tests.conftest import TINY_CONFIG
from training.tests.policy_setup import ShortReplyScorer, build_reward_model, write_prompts

pytestmark = pytest.mark.django_db

SCAN = {"temperatures": [0.5, 1.5], "max_samples": 3, "max_prompts": 4}


@pytest.fixture
def reward_model(tiny_policy, tmp_path) -> Checkpoint:
    path = build_reward_model(Path(tiny_policy.path), tmp_path / "reward")
    checkpoint, _ = checkpoint_register(name="tiny-reward", path=str(path), kind=CheckpointKind.REWARD_HELPFULNESS)
    return checkpoint


def test_a_scan_runs_from_the_api_and_stores_its_curve_and_plot(
    tiny_policy, reward_model, tmp_path, researcher, batch_admin, client_for, django_capture_on_commit_callbacks
):
    prompts = write_prompts(tmp_path / "prompts.jsonl", train=2, test=3)
    client = client_for(researcher)
    url = reverse("checkpoint-temperature-scans", kwargs={"checkpoint_id": tiny_policy.pk})
    body = {"prompts_path": str(prompts), "config": {**SCAN, "max_new_tokens": 6}, "client_key": "scan-1"}
    with django_capture_on_commit_callbacks(execute=True):  # eager Celery: the training task runs here
        response = client.post(url, body, format="json")
    assert response.status_code == 202, response.content
    scan = TemperatureScan.objects.get(pk=response.json()["id"])
    assert (scan.status, scan.error, scan.progress) == ("done", "", 1.0)
    assert scan.reward_helpfulness == reward_model, "the newest reward model by default"

    detail = client.get(reverse("temperature-scan", kwargs={"scan_id": scan.pk})).json()
    curves = detail["result"]["max_reward_by_n"]
    assert set(curves) == {"0.5", "1.5"} and all(len(curve) == 3 for curve in curves.values()), "a point per N"
    assert detail["result"]["prompts"] == 3 and detail["result"]["split"] == "test"
    assert detail["best_temperature"] in (0.5, 1.5)
    plot = client.get(detail["plot"])
    assert plot.status_code == 200 and b"".join(plot.streaming_content).startswith(b"\x89PNG")
    shown = client.get(reverse("checkpoint-detail", kwargs={"checkpoint_id": tiny_policy.pk})).json()
    assert [entry["id"] for entry in shown["temperature_scans"]] == [scan.pk]
    assert client.post(url, body, format="json").json()["id"] == scan.pk, "a retry with the same key: the same scan"

    page = Client()
    page.force_login(researcher)
    html = page.get(f"/admin/checkpoints/checkpoint/{tiny_policy.pk}/change/").content.decode()
    assert f"best temperature {scan.best_temperature:g}" in html and detail["plot"] in html

    # The best temperatures reach a batch template only when an admin asks for it: the admin action takes the two
    # best of the newest policy's newest scan, the API a given scan and count.
    template, _ = template_create(created_by=None, name="weekly", size=4, temperatures=[0.7, 1.0])
    admin_page = Client()
    admin_page.force_login(batch_admin)
    action = {"action": "temperatures_from_scan", "_selected_action": [template.pk]}
    assert admin_page.post("/admin/loop/batchtemplate/", action).status_code == 302
    template.refresh_from_db()
    assert template.temperatures == [0.5, 1.5]
    move = reverse("batch-template-temperatures-from-scan", kwargs={"template_id": template.pk})
    assert client_for(batch_admin).post(move, {"count": 1}, format="json").json()["temperatures"] == [
        scan.best_temperature
    ]
    assert client_for(batch_admin).post(move, {"scan": scan.pk}, format="json").json()["temperatures"] == [0.5, 1.5]


def test_a_scan_needs_a_policy_and_known_settings(tiny_policy, reward_model, researcher, client_for):
    client = client_for(researcher)
    url = reverse("checkpoint-temperature-scans", kwargs={"checkpoint_id": reward_model.pk})
    assert client.post(url, {}, format="json").status_code == 400
    url = reverse("checkpoint-temperature-scans", kwargs={"checkpoint_id": tiny_policy.pk})
    refused = client.post(url, {"config": {"temperatures": [0, 1]}}, format="json")
    assert refused.status_code == 400 and "temperatures" in refused.content.decode()
    assert not TemperatureScan.objects.exists()


class MarkerScorer(ShortReplyScorer):
    """Stands for the second iteration's reward model: it scores MARKER above anything the policy writes."""

    MARKER = "Thank you kindly, friend."

    def probability(self, prompts, replies, is_safety) -> list[float]:
        scores = super().probability(prompts, replies, is_safety)
        return [1.0 if reply == self.MARKER else min(score, 0.9) for reply, score in zip(replies, scores, strict=True)]


def _iteration(batch, base: Checkpoint, **options) -> Iteration:
    iteration, _ = iteration_create(
        created_by=None,
        enqueue=lambda _: None,
        base_policy_id=base.pk,
        methods=["rejection_sampling"],
        batch_ids=[batch.pk],
        reward_backbone_id=base.pk,
        **options,
    )
    iteration = iteration_run(iteration_id=iteration.pk)
    assert (iteration.status, iteration.error) == (Iteration.Status.DONE, "")
    return iteration


def _training_samples(iteration: Iteration) -> list[dict]:
    assert iteration.rejection_sampling_run is not None and iteration.rejection_sampling_run.output_checkpoint
    path = Path(iteration.rejection_sampling_run.output_checkpoint.path) / "training_samples.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_scan_feeds_rejection_sampling_and_a_second_iteration_pools_the_first_ones_best(
    judged_batch, tiny_policy, researcher, client_for, monkeypatch
):
    rs_scan = {**TINY_CONFIG, "rejection_sampling": {**TINY_CONFIG["rejection_sampling"], "temperature": "scan"}}
    body = {
        "batches": [judged_batch.pk],
        "base_policy": tiny_policy.pk,
        "methods": ["rejection_sampling"],
        "reward_backbone": tiny_policy.pk,
        "config": rs_scan,
    }
    refused = client_for(researcher).post(reverse("iteration-list"), body, format="json")
    assert refused.status_code == 400 and "scan it first" in refused.content.decode()

    first = _iteration(judged_batch, tiny_policy, config={**rs_scan, "temperature_scan": SCAN}, scan_temperatures=True)
    scan = first.temperature_scan
    assert scan is not None and scan.checkpoint == tiny_policy and scan.status == "done"
    assert scan.config["max_new_tokens"] == 8, "the scan samples as long as rejection sampling does"
    assert first.rejection_sampling_run is not None
    metrics = first.rejection_sampling_run.metrics
    assert metrics["temperature"] == scan.best_temperature != 1.0 and metrics["temperature_scan"] == scan.pk
    assert metrics["from_earlier_iterations"] == 0, "no earlier iteration"
    detail = client_for(researcher).get(reverse("iteration-detail", kwargs={"iteration_id": first.pk})).json()
    assert detail["temperature_scan"] == scan.pk and "temperature_scan.png" in detail["plots"]
    report = client_for(researcher).get(reverse("iteration-report", kwargs={"iteration_id": first.pk})).json()
    assert report["temperature_scan"]["best_temperature"] == scan.best_temperature
    assert report["rejection_sampling"]["temperature"] == scan.best_temperature

    # The first iteration kept, for one prompt, a reply the second iteration's reward model rates best of all.
    assert first.new_policy is not None
    kept_file = Path(first.new_policy.path) / "best_samples.jsonl"
    kept = [json.loads(line) for line in kept_file.read_text().splitlines()]
    kept[0] = {**kept[0], "reply": MarkerScorer.MARKER, "ended": True}
    kept_file.write_text("".join(json.dumps(row) + "\n" for row in kept))
    monkeypatch.setattr("training.rejection_sampling.PiecewiseScorer", lambda *args, **kwargs: MarkerScorer())

    second = _iteration(judged_batch, first.new_policy, config=TINY_CONFIG)
    pooled = [row for row in _training_samples(second) if row["reply"] == MarkerScorer.MARKER]
    assert [(row["prompt"], row["source"], row["score"]) for row in pooled] == [
        (kept[0]["prompt"], str(kept_file), 1.0)
    ]
    assert second.rejection_sampling_run is not None
    assert second.rejection_sampling_run.metrics["from_earlier_iterations"] >= 1
    report = client_for(researcher).get(reverse("iteration-report", kwargs={"iteration_id": second.pk})).json()
    assert report["rejection_sampling"]["from_earlier_iterations"] >= 1 and report["temperature_scan"] is None

    off = {**TINY_CONFIG, "rejection_sampling": {**TINY_CONFIG["rejection_sampling"], "include_earlier_samples": False}}
    third = _iteration(judged_batch, first.new_policy, config=off)
    assert all(row["reply"] != MarkerScorer.MARKER and row["source"] == "" for row in _training_samples(third))
    assert third.rejection_sampling_run is not None
    assert third.rejection_sampling_run.metrics["from_earlier_iterations"] == 0

    # The checkpoint's admin action queues a scan with the newest reward models and the newest iteration's prompts.
    page = Client()
    page.force_login(researcher)
    assert third.new_policy_id is not None
    action = {"action": "scan_temperatures", "_selected_action": [third.new_policy_id]}
    assert page.post("/admin/checkpoints/checkpoint/", action).status_code == 302
    queued = TemperatureScan.objects.get(checkpoint_id=third.new_policy_id)
    assert queued.status == "queued" and queued.prompts_path == third.prompts_path
    assert third.reward_helpfulness_run is not None
    assert queued.reward_helpfulness == third.reward_helpfulness_run.output_checkpoint
