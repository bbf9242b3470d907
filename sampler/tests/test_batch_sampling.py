"""Pre-sampling batches and live pairs, through the services and tasks (eager Celery) on tiny models."""

import re
from pathlib import Path

import pytest
from django.urls import reverse

from backend.batches.models import Batch, Comparison, Focus, LivePair
from backend.batches.services.annotations import annotation_submit
from backend.batches.services.batches import batch_create, batch_open
from backend.batches.services.prompts import dialogue_continue, prompt_create
from backend.checkpoints.models import CheckpointKind
from backend.checkpoints.services import checkpoint_register
from backend.errors import Conflict, InvalidInput
from insights.models import ResponseScore
from sampler import services
from sampler.engines.tiny import build_tiny_checkpoint
from sampler.tasks import enqueue_chunk
from training.reward_model import load_backbone, save_reward_model

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-policies")
    return {
        "a": build_tiny_checkpoint(root / "a", seed=1, eos_boost=4.0),
        "b": build_tiny_checkpoint(root / "b", seed=2, eos_boost=4.0),
        "mute": build_tiny_checkpoint(root / "mute", seed=3, eos_boost=50.0),
    }


def policy(name: str, path: Path | str):
    return checkpoint_register(name=name, path=str(path))[0]


def pool(count: int, *, safety: bool = False) -> list[int]:
    return [
        prompt_create(text=f"Pool prompt {i} {'unsafe' if safety else ''}?", author=None, is_safety=safety)[0].pk
        for i in range(count)
    ]


def draft(checkpoints, *, target: int, focus: str = Focus.HELPFULNESS, writes: bool = False, temps=(0.7, 1.0)):
    batch, _ = batch_create(
        name=f"b-{target}-{focus}-{writes}-{len(checkpoints)}",
        target_comparisons=target,
        created_by=None,
        focus=focus,
        checkpoint_ids=[c.pk for c in checkpoints],
        temperatures=list(temps),
        max_new_tokens=12,
        annotators_write_prompts=writes,
    )
    return batch


def test_pre_sampling_fills_the_batch_from_the_pool_with_full_parameters(tiny_dirs, on_commit):
    pool(5)
    pool(3, safety=True)
    batch = draft([policy("a", tiny_dirs["a"]), policy("b", tiny_dirs["b"])], target=4)
    with on_commit(execute=True):
        queued = services.batch_start_sampling(batch=batch, enqueue=enqueue_chunk, chunk_size=3)
    assert queued == {"prompts": 4, "chunks": 2}
    batch.refresh_from_db()
    assert batch.status == Batch.Status.SAMPLING and batch.sampled_at is not None and not batch.sampling_error
    pairs = list(Comparison.objects.filter(batch=batch).select_related("first_response", "second_response"))
    assert len(pairs) == 4
    assert not any(p.prompt.is_safety for p in pairs), "a helpfulness batch took safety prompts"
    for pair in pairs:
        first, second = pair.first_response, pair.second_response
        assert first.checkpoint_id != second.checkpoint_id
        assert first.engine == "transformers" and first.seed is not None and first.max_new_tokens == 12
        assert first.completion_tokens is not None and first.finish_reason in ("stop", "length")


def test_a_redelivered_chunk_adds_no_duplicate(tiny_dirs):
    prompt_ids = pool(3)
    batch = draft([policy("a", tiny_dirs["a"]), policy("b", tiny_dirs["b"])], target=3)
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.SAMPLING)
    assert services.batch_sample_chunk(batch_id=batch.pk, prompt_ids=prompt_ids) == 3
    assert services.batch_sample_chunk(batch_id=batch.pk, prompt_ids=prompt_ids) == 0
    assert Comparison.objects.filter(batch=batch).count() == 3


def test_a_checkpoint_that_fails_to_load_is_reported_on_the_batch(tmp_path):
    prompt_ids = pool(2)
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    batch = draft([policy("broken", broken)], target=2)
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.SAMPLING)
    assert services.batch_sample_chunk(batch_id=batch.pk, prompt_ids=prompt_ids) == 0
    batch.refresh_from_db()
    assert str(broken) in batch.sampling_error and not Comparison.objects.filter(batch=batch).exists()


def test_identical_responses_are_resampled_then_flagged(tiny_dirs):
    prompt_ids = pool(1)
    batch = draft([policy("mute", tiny_dirs["mute"])], target=1)
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.SAMPLING)
    services.batch_sample_chunk(batch_id=batch.pk, prompt_ids=prompt_ids)
    pair = Comparison.objects.get(batch=batch)
    # The model ends every completion at once, so both sides stay empty even with a fresh seed.
    assert pair.responses_identical
    assert pair.second_response.seed != pair.first_response.seed


def test_start_sampling_refuses_what_it_cannot_do(tiny_dirs):
    batch = draft([policy("a", tiny_dirs["a"])], target=2)
    with pytest.raises(InvalidInput, match="no unused helpfulness prompts"):
        services.batch_start_sampling(batch=batch, enqueue=enqueue_chunk)
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.CLOSED)
    batch.refresh_from_db()
    with pytest.raises(Conflict, match=re.escape(services.BATCH_NOT_SAMPLABLE)):
        services.batch_start_sampling(batch=batch, enqueue=enqueue_chunk)


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory) -> Path:
    """A reward model (fresh scalar head) on a tiny backbone, as the reward trainer saves one."""
    model, tokenizer = load_backbone(build_tiny_checkpoint(tmp_path_factory.mktemp("rm-backbone"), seed=5))
    target = tmp_path_factory.mktemp("reward-model")
    save_reward_model(model, tokenizer, target, mean=0.0, std=1.0)
    return target


class RecordingScorer:
    """The real reward model, remembering each (prompt, score) it gave: the candidates it judged.

    Candidates are scored side by side in plan order (first, then second response of each prompt).
    """

    def __init__(self, scorer, scored: list[tuple[str, float]]) -> None:
        self.scorer, self.scored = scorer, scored

    def score(self, prompts, replies):
        scores = self.scorer.score(prompts, replies)
        self.scored.extend((prompt[-1]["content"], value) for prompt, value in zip(prompts, scores, strict=True))
        return scores


def test_uncertainty_selection_keeps_the_pairs_the_reward_model_is_least_sure_of(
    tiny_dirs, reward_dir, on_commit, monkeypatch
):
    reward = checkpoint_register(name="rm", path=str(reward_dir), kind=CheckpointKind.REWARD_HELPFULNESS)[0]
    pool(8)
    batch, _ = batch_create(
        name="uncertain",
        target_comparisons=3,
        created_by=None,
        checkpoint_ids=[policy("a", tiny_dirs["a"]).pk, policy("b", tiny_dirs["b"]).pk],
        temperatures=[0.7, 1.0],
        max_new_tokens=12,
        selection="uncertain",
        selection_checkpoint_id=reward.pk,
    )
    scored: list[tuple[str, float]] = []
    load = services._reward_scorer
    monkeypatch.setattr(services, "_reward_scorer", lambda path: RecordingScorer(load(path), scored))
    with on_commit(execute=True):
        queued = services.batch_start_sampling(batch=batch, enqueue=enqueue_chunk)
    # Two candidates per pair kept: six of the eight pool prompts are sampled and scored.
    assert queued == {"prompts": 6, "chunks": 1}
    batch.refresh_from_db()
    assert not batch.sampling_error and batch.sampled_at is not None
    pairs = list(Comparison.objects.filter(batch=batch).select_related("prompt", "first_response", "second_response"))
    assert len(pairs) == batch.target_comparisons == 3

    by_prompt: dict[str, list[float]] = {}
    for prompt_text, value in scored:
        by_prompt.setdefault(prompt_text, []).append(value)
    candidates = {text: abs(first - second) for text, (first, second) in by_prompt.items()}
    assert len(candidates) == 6
    kept = {pair.prompt.text: candidates[pair.prompt.text] for pair in pairs}
    left_out = set(candidates) - set(kept)
    assert max(kept.values()) <= min(candidates[text] for text in left_out)
    # The reward model's scores of the kept responses are stored for the dashboards.
    for pair in pairs:
        stored = [
            ResponseScore.objects.get(response=response, checkpoint=reward).score
            for response in (pair.first_response, pair.second_response)
        ]
        assert stored == pytest.approx(by_prompt[pair.prompt.text])


def test_a_reward_model_that_fails_to_load_is_reported_on_the_batch(tiny_dirs, tmp_path):
    broken = tmp_path / "not-a-reward-model"
    broken.mkdir()
    reward = checkpoint_register(name="broken-rm", path=str(broken), kind=CheckpointKind.REWARD_SAFETY)[0]
    prompt_ids = pool(2)
    batch = draft([policy("a", tiny_dirs["a"]), policy("b", tiny_dirs["b"])], target=1)
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.SAMPLING, selection=Batch.Selection.UNCERTAIN, selection_checkpoint=reward
    )
    assert services.batch_sample_chunk(batch_id=batch.pk, prompt_ids=prompt_ids) == 0
    batch.refresh_from_db()
    assert str(broken) in batch.sampling_error and not Comparison.objects.filter(batch=batch).exists()


def test_uncertainty_selection_without_a_reward_model_is_refused_naming_the_field(tiny_dirs, client_for, batch_admin):
    pool(2)
    batch = draft([policy("a", tiny_dirs["a"]), policy("b", tiny_dirs["b"])], target=1)
    # The admin's change form can switch a draft to 'uncertain' without choosing the reward model.
    Batch.objects.filter(pk=batch.pk).update(selection=Batch.Selection.UNCERTAIN)
    response = client_for(batch_admin).post(reverse("batch-sample", kwargs={"batch_id": batch.pk}))
    assert response.status_code == 400 and "selection_checkpoint" in response.json(), response.content
    batch.refresh_from_db()
    assert batch.status == Batch.Status.DRAFT and not Comparison.objects.filter(batch=batch).exists()


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Run on-commit callbacks (the enqueued tasks) as a real commit would, inside the test's transaction."""
    return django_capture_on_commit_callbacks


@pytest.fixture
def writing_batch(tiny_dirs):
    batch = draft([policy("a", tiny_dirs["a"]), policy("b", tiny_dirs["b"])], target=10, writes=True)
    # One pair from the pool as well (a writing batch would open without any).
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.SAMPLING)
    services.batch_sample_chunk(batch_id=batch.pk, prompt_ids=pool(1))
    return batch_open(batch=batch)


@pytest.mark.django_db(transaction=True)
def test_a_live_pair_is_sampled_and_leased_to_its_author(writing_batch, client_for, annotator):
    client = client_for(annotator)
    url = reverse("live-pair-create", kwargs={"batch_id": writing_batch.pk})
    created = client.post(url, {"text": "Write a limerick about a cat.", "client_key": "lp-1"}, format="json")
    assert created.status_code == 202, created.content
    body = created.json()
    # Eager mode: the task ran in-process on commit, before the reply.
    assert body["status"] == "done" and body["assignment"]["prompt"] == "Write a limerick about a cat."
    assert "checkpoint" not in str(body["assignment"])
    polled = client.get(body["poll_url"]).json()
    assert polled["assignment"]["id"] == body["assignment"]["id"]
    retried = client.post(url, {"text": "Write a limerick about a cat.", "client_key": "lp-1"}, format="json")
    assert retried.status_code == 200 and retried.json()["id"] == body["id"]
    assert LivePair.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_dialogue_continues_with_a_live_pair(writing_batch, client_for, annotator):
    client = client_for(annotator)
    url = reverse("live-pair-create", kwargs={"batch_id": writing_batch.pk})
    first = client.post(url, {"text": "Name a planet."}, format="json").json()
    annotation, _ = annotation_submit(
        assignment_id=first["assignment"]["id"],
        annotator=annotator,
        choice="a",
        strength="better",
        idempotency_key="d1",
    )
    next_prompt, _ = dialogue_continue(annotation_id=annotation.pk, annotator=annotator, next_message="Why that one?")
    second = client.post(url, {"prompt": next_prompt.pk}, format="json").json()
    assert second["status"] == "done"
    assert [turn["role"] for turn in second["assignment"]["dialogue"]] == ["user", "assistant"]
    assert second["assignment"]["prompt"] == "Why that one?"


def test_live_pairs_need_a_writing_batch_and_exactly_one_of_text_or_prompt(writing_batch, client_for, annotator):
    client = client_for(annotator)
    url = reverse("live-pair-create", kwargs={"batch_id": writing_batch.pk})
    both = client.post(url, {"text": "x", "prompt": 1}, format="json")
    assert both.status_code == 400 and "text" in both.json()
    neither = client.post(url, {}, format="json")
    assert neither.status_code == 400
    Batch.objects.filter(pk=writing_batch.pk).update(annotators_write_prompts=False)
    refused = client.post(url, {"text": "hello"}, format="json")
    assert refused.status_code == 409 and "written prompts" in refused.json()["detail"]


def test_live_pair_request_is_idempotent_in_the_service(writing_batch, annotator):
    calls: list[int] = []
    one, created = services.live_pair_request(
        batch=writing_batch, annotator=annotator, enqueue=calls.append, text="Hi?", client_key="k"
    )
    two, again = services.live_pair_request(
        batch=writing_batch, annotator=annotator, enqueue=calls.append, text="Hi?", client_key="k"
    )
    assert created and not again and one.pk == two.pk
