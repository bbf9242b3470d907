"""Every stored response says what produced it, and finishes the way the engine said it finished."""

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
import transformers
from django.urls import reverse

from backend.batches.models import Comparison, Response
from backend.batches.services.batches import batch_create
from backend.batches.services.prompts import prompt_create
from backend.checkpoints.services import checkpoint_register
from preference_format import FinishReason, Reproducibility
from sampler.engines import Engine, GenerationRequest, GenerationResult, Provenance
from sampler.engines.tiny import build_tiny_checkpoint
from sampler.engines.transformers_engine import TransformersEngine
from sampler.sampling import Uncertainty, batch_sample_prompts

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("provenance")
    return [build_tiny_checkpoint(root / name, seed=seed, eos_boost=4.0) for seed, name in enumerate("ab", start=1)]


def batch_of(tiny_dirs: list[Path], prompts: int):
    checkpoints = [checkpoint_register(name=f"policy-{path.name}", path=str(path))[0] for path in tiny_dirs]
    batch, _ = batch_create(
        name="provenance",
        target_comparisons=max(prompts, 4),
        created_by=None,
        checkpoint_ids=[c.pk for c in checkpoints],
        temperatures=[0.7, 1.0],
        max_new_tokens=3,
    )
    return batch, [prompt_create(text=f"Provenance prompt {i}?", author=None)[0] for i in range(prompts)]


def test_responses_record_engine_version_device_dtype_and_reproducibility(tiny_dirs, batch_admin, client_for):
    batch, prompts = batch_of(tiny_dirs, 3)
    engine = TransformersEngine(device="cpu", batch_size=4)
    batch_sample_prompts(batch=batch, prompts=prompts, engine=engine, engine_name="transformers")
    stored = set(Response.objects.values_list("engine", "engine_version", "device", "dtype", "reproducibility"))
    version = f"transformers {transformers.__version__}, torch {torch.__version__}"
    assert stored == {("transformers", version, "cpu", "float32", Reproducibility.BATCH)}
    listed = client_for(batch_admin).get(reverse("batch-comparisons", kwargs={"batch_id": batch.pk})).json()
    first = listed["results"][0]["first_response"]
    assert (first["engine_version"], first["device"], first["reproducibility"]) == (version, "cpu", "batch")


class ScriptedEngine(Engine):
    """Finishes the requests of prompts whose text names a reason with that reason (an engine we cannot run here)."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        provenance = Provenance("vllm", "vllm 0.19.1", "cuda:0 NVIDIA H200", "bfloat16", Reproducibility.NONE)
        results = []
        for index, request in enumerate(requests):
            text = request.messages[-1]["content"]
            reason = next((r for r in FinishReason if r.value in text), FinishReason.STOP)
            results.append(GenerationResult(f"reply {index} {request.seed}", 4, 2, reason, 1.0, provenance))
        return results


def test_finish_reasons_are_stored_as_given_and_aborted_pairs_are_not_stored(tiny_dirs):
    batch, _ = batch_of(tiny_dirs, 0)
    texts = ["ends with stop", "runs to length", "was abort-ed", "content_filter hit"]
    prompts = [prompt_create(text=text, author=None)[0] for text in texts]
    pairs = batch_sample_prompts(batch=batch, prompts=prompts, engine=ScriptedEngine(), engine_name="vllm")
    assert sorted(c.prompt.text for c in pairs) == sorted(t for t in texts if "abort" not in t)
    stored = dict(Comparison.objects.filter(batch=batch).values_list("prompt__text", "first_response__finish_reason"))
    assert stored == {"ends with stop": "stop", "runs to length": "length", "content_filter hit": "content_filter"}
    assert set(Response.objects.values_list("device", "reproducibility")) == {("cuda:0 NVIDIA H200", "none")}


class RecordingEngine(ScriptedEngine):
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.events.append("generate")
        return super().generate(requests)

    def release_device(self) -> None:
        self.events.append("release")


class RecordingScorer:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def score(self, prompts, replies) -> list[float]:
        self.events.append("score")
        return [float(len(reply)) for reply in replies]


def test_the_engine_gives_the_device_up_before_the_uncertainty_reward_model_scores(tiny_dirs):
    batch, _ = batch_of(tiny_dirs, 0)
    prompts = [prompt_create(text=f"Scored prompt {i}", author=None)[0] for i in range(4)]
    events: list[str] = []
    checkpoint = checkpoint_register(name="reward", path="/data/reward", kind="reward_helpfulness")[0]
    uncertainty = Uncertainty(scorer=RecordingScorer(events), checkpoint=checkpoint, keep=2)
    pairs = batch_sample_prompts(
        batch=batch, prompts=prompts, engine=RecordingEngine(events), engine_name="vllm", uncertainty=uncertainty
    )
    assert len(pairs) == 2 and events == ["generate", "release", "score"]
