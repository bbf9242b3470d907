"""Rejection-sampling fine-tuning (Llama 2, section 3.2.3): best of K samples per prompt, then SFT on them.

K responses per train prompt are sampled from the policy and scored with the same piecewise R_c as
PPO; the best of each prompt (a complete response, ending in EOS, before a truncated one) is kept and
written to `best_samples.jsonl`. Earlier iterations' kept samples (their `best_samples.jsonl`, given as
`earlier_samples`) join the pool, as Llama 2 does against forgetting ("we incorporate top-performing
samples from all prior iterations"): those for the same prompts are scored again under this run's reward
models, and each prompt keeps the best of its own sample and theirs, by the same rule. The fine-tuning
data is written to `training_samples.jsonl` (each line says where it came from), and the policy is
fine-tuned on it with the loss on response tokens only. The output directory is a Hugging Face policy
directory, so PPO can start from it (the paper's combination: rejection sampling first, then PPO).
Sampling and pooling are done once and kept in the work directory; the fine-tuning writes a resumable
checkpoint every `checkpoint_every` steps. Under torchrun each process draws its generation calls
(`generation_batch_size` sequences, each call under its own seed) and scores its share, every process then holds
all the samples, and the fine-tuning runs data-parallel (training/fine_tuning.py); rank 0 writes the files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from training.checkpointing import RunFiles, config_record
from training.cli import option
from training.distributed import Runtime, barrier, full_model_state, shard
from training.distributed import runtime as distributed_runtime
from training.fine_tuning import IGNORE_INDEX, FineTuning, fine_tune, response_loss_sum, sft_batch
from training.policy import Policy, load_policy, mixed_precision, save_policy, training_dtype
from training.policy_plots import plot_rejection_sampling
from training.ppo import Progress
from training.rollout import PromptRow, encode_prompts, load_prompts
from training.rollout_engine import (
    ENGINES,
    RolloutEngine,
    Sampling,
    TransformersRolloutEngine,
    distributed_rollout,
    make_engine,
)
from training.scoring import PiecewiseScorer, Scorer, sharded_scorer

__all__ = ["IGNORE_INDEX", "response_loss_sum", "sft_batch"]  # fine-tuning pieces long imported from here

SAMPLES_FILE = "best_samples.jsonl"
TRAINING_FILE = "training_samples.jsonl"
THIS_RUN = ""
"""The `source` of a training sample that this run drew (the others name the earlier file they came from)."""


@dataclass
class RejectionSamplingConfig:
    """Everything a run needs; SFT defaults follow Llama 2's fine-tuning where the paper gives one. Fields with
    `option` metadata are the options of `python -m training.rejection_cli` (the policy, reward models and
    prompts come from `add_policy_arguments`)."""

    policy: Path
    """A Hugging Face causal-LM directory to sample from and fine-tune."""
    reward_helpfulness: Path
    reward_safety: Path | None
    """None scores every reply with the helpfulness model."""
    prompts: Path
    """JSONL prompts file (as for PPO); its train split is sampled."""
    output_dir: Path = field(metadata=option("Where to write the fine-tuned policy directory.", flag="--output"))
    """Created complete at the end of the run."""
    samples_per_prompt: int = field(default=4, metadata=option("K, samples drawn per prompt."))
    """The best of the K is kept."""
    temperature: float = field(default=1.0, metadata=option("Sampling temperature."))
    """The best one shifts as RLHF proceeds: see temperature_scan."""
    top_p: float = field(default=1.0, metadata=option("Nucleus sampling."))
    max_new_tokens: int = field(default=256, metadata=option("Longest response."))
    generation_batch_size: int = field(default=64, metadata=option("Sequences per generate() call."))
    learning_rate: float = field(default=1e-5, metadata=option("Peak fine-tuning learning rate."))
    """Cosine decay to 10% of it after a short warm-up."""
    epochs: int = field(default=1, metadata=option("Passes over the best samples."))
    batch_size: int = field(default=64, metadata=option("Examples per optimizer step."))
    """Llama 2 SFT: 64."""
    micro_batch_size: int = field(default=8, metadata=option("Examples per forward pass."))
    """Gradients accumulate up to batch_size."""
    max_length: int = field(default=1024, metadata=option("Tokens per (prompt, response)."))
    """Longer examples are cut at the end."""
    weight_decay: float = field(default=0.1, metadata=option("AdamW weight decay."))
    max_grad_norm: float = 1.0
    seed: int = field(default=0, metadata=option("Sampling and data order."))
    checkpoint_every: int = field(default=50, metadata=option("Steps between resumable checkpoints."))
    device: str = field(default="auto", metadata=option("auto, cpu or cuda."))
    bf16: bool | None = field(default=None, metadata=option("bf16 compute, fp32 weights (auto: on GPU only)."))
    """Compute in bf16 under autocast, weights kept in fp32 (default: on GPU only)."""
    stop_after_steps: int | None = None
    """Stop (with a checkpoint) after this many steps: for tests that simulate a killed run."""
    earlier_samples: list[Path] = field(default_factory=list)
    """Earlier iterations' `best_samples.jsonl` files, whose samples for the same prompts join the pool."""
    rollout_engine: str = field(default="transformers", metadata=option("transformers (this process) or vllm (GPU)."))
    """What the samples are drawn with (training/rollout_engine.py)."""
    vllm_gpu_memory_utilization: float = field(
        default=0.3, metadata=option("vllm: share of the GPU for its weights and KV cache (training has the rest).")
    )
    fsdp: bool = field(default=False, metadata=option("Under torchrun: shard the model (FSDP2) instead of DDP."))
    include_earlier_samples: bool = field(
        default=True,
        metadata=option(
            "Fine-tune on this run's best samples alone, not pooled with earlier ones.", flag="--no-earlier-samples"
        ),
    )
    """Off: fine-tune on this run's best of K alone, whatever `earlier_samples` holds."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BestSample:
    prompt: list[dict[str, str]]
    is_safety: bool
    reply: str
    score: float
    ended: bool
    """Whether the reply ended with EOS."""
    scores: list[float]
    """R_c of all K samples of the prompt."""
    complete: list[bool]
    """Whether each of the K samples ended with EOS."""


@dataclass(frozen=True)
class TrainingSample:
    """One fine-tuning example: the best reply to a prompt across this run's samples and earlier iterations'."""

    prompt: list[dict[str, str]]
    is_safety: bool
    reply: str
    score: float
    """R_c under this run's reward models (an earlier sample is scored again)."""
    ended: bool
    source: str
    """THIS_RUN, or the earlier `best_samples.jsonl` it came from."""
    kept_score: float
    """Its score when it was kept: under this run's reward models for its own samples, else the earlier run's."""


def best_of(replies: Sequence[str], scores: Sequence[float], ended: Sequence[bool]) -> int:
    """The index of the best sample: the highest score among complete replies, else among all."""
    complete = [i for i in range(len(replies)) if ended[i]] or list(range(len(replies)))
    return max(complete, key=lambda i: scores[i])


def sample_best(
    policy: Policy,
    scorer: Scorer,
    rows: Sequence[PromptRow],
    config: RejectionSamplingConfig,
    *,
    engine: RolloutEngine | None = None,
    runtime: Runtime | None = None,
) -> list[BestSample]:
    """K samples for each prompt (the K copies of a prompt sampled together, `generation_batch_size` sequences
    per call), scored, the best kept. Under torchrun each process draws its calls (and `scorer`, sharded, scores
    its share); every process gets all the samples."""
    k = config.samples_per_prompt
    repeated = [row for row in rows for _ in range(k)]
    rollout = distributed_rollout(
        engine or TransformersRolloutEngine(policy),
        policy,
        encode_prompts(policy, [row.prompt for row in repeated]),
        Sampling(config.temperature, config.top_p, config.max_new_tokens),
        seed=config.seed,
        call_size=config.generation_batch_size,
        runtime=runtime or Runtime(0, 1, next(policy.model.parameters()).device),
    )
    scores = scorer.probability([r.prompt for r in repeated], rollout.texts, [r.is_safety for r in repeated])
    ended = rollout.ended.tolist()
    best = []
    for index, row in enumerate(rows):
        own = slice(index * k, (index + 1) * k)
        choice = index * k + best_of(rollout.texts[own], scores[own], ended[own])
        best.append(
            BestSample(
                row.prompt, row.is_safety, rollout.texts[choice], scores[choice], ended[choice], scores[own], ended[own]
            )
        )
    return best


def prompt_key(prompt: Sequence[dict[str, str]]) -> str:
    """A prompt's identity across prompts files: its messages as canonical JSON."""
    return json.dumps(list(prompt), sort_keys=True, ensure_ascii=False)


def pool_with_earlier(
    samples: Sequence[BestSample], earlier: Sequence[Path], scorer: Scorer | None
) -> list[TrainingSample]:
    """Per prompt, the best of this run's sample and the earlier files' samples for the same prompt (all scored
    with `scorer`, this run's R_c; needed only when an earlier file holds one of the prompts)."""
    index = {prompt_key(sample.prompt): i for i, sample in enumerate(samples)}
    pools = [[TrainingSample(s.prompt, s.is_safety, s.reply, s.score, s.ended, THIS_RUN, s.score)] for s in samples]
    found: list[tuple[int, dict[str, Any], str]] = []
    for path in earlier:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            position = index.get(prompt_key(row["prompt"]))
            if position is not None:
                found.append((position, row, str(path)))
    if found:
        if scorer is None:
            raise ValueError("scoring earlier samples needs a scorer")
        scores = scorer.probability(
            [samples[i].prompt for i, _, _ in found],
            [row["reply"] for _, row, _ in found],
            [samples[i].is_safety for i, _, _ in found],
        )
        for (position, row, source), score in zip(found, scores, strict=True):
            mine = samples[position]
            pools[position].append(
                TrainingSample(
                    mine.prompt, mine.is_safety, row["reply"], score, bool(row["ended"]), source, row["score"]
                )
            )
    return [pool[best_of([p.reply for p in pool], [p.score for p in pool], [p.ended for p in pool])] for pool in pools]


def encode_example(policy: Policy, sample: BestSample | TrainingSample, max_length: int) -> tuple[list[int], int]:
    """Token ids of (prompt in the chat template, reply, EOS if it had one) and the prompt's length."""
    prompt = encode_prompts(policy, [sample.prompt])[0]
    reply = policy.tokenizer(sample.reply, add_special_tokens=False)["input_ids"]
    ids = [*prompt, *reply, *([policy.eos_token_id] if sample.ended else [])]
    return ids[:max_length], len(prompt)


def train_rejection_sampling(
    config: RejectionSamplingConfig, *, scorer: Scorer | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Sample, keep the best, fine-tune, on one process or data-parallel under torchrun; returns the metrics also
    written to `metrics.json` (by the main process)."""
    if config.samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be at least 1, got {config.samples_per_prompt}")
    if config.rollout_engine not in ENGINES:
        raise ValueError(f"rollout_engine must be one of {', '.join(ENGINES)}, got {config.rollout_engine!r}")
    runtime = distributed_runtime(config.device)
    dtype = training_dtype(runtime.device, config.bf16)
    torch.manual_seed(config.seed)
    policy = load_policy(config.policy, device=runtime.device, dtype=torch.float32)  # fp32 weights, bf16 compute
    sharded = runtime.distributed and config.fsdp
    if sharded:
        shard(policy.model, runtime)
    files = RunFiles(config.output_dir)
    kept = {name: (files.work / name).exists() for name in (SAMPLES_FILE, TRAINING_FILE)}
    barrier(runtime)  # every process has seen what an earlier attempt left before the main one writes anything
    scorers = _LazyScorer(config, scorer, runtime)
    samples = _best_samples(config, policy, scorers, files, runtime, dtype, kept[SAMPLES_FILE], sharded)
    training = _training_samples(config, samples, scorers, files, runtime, kept[TRAINING_FILE])
    if sharded:  # sampling's forward passes left the root's parameters gathered; the optimizer needs the shards
        policy.model.reshard()

    examples = [encode_example(policy, sample, config.max_length) for sample in training]
    settings = FineTuning(
        config.learning_rate,
        config.weight_decay,
        config.max_grad_norm,
        config.epochs,
        config.batch_size,
        config.micro_batch_size,
        config.seed,
        config.checkpoint_every,
        config.stop_after_steps,
    )
    done = fine_tune(
        policy.model,
        examples,
        settings,
        pad_token_id=policy.pad_token_id,
        files=files,
        runtime=runtime,
        sharded=sharded,
        dtype=dtype,
        progress=progress,
    )
    if done.stopped:
        barrier(runtime)
        return {"stopped_at_step": done.step, "total_steps": done.total}
    metrics = _metrics(config, samples, training, done.total, done.log)
    final = _unsharded(policy, config, runtime) if sharded else policy
    if runtime.main:
        files.finish(partial(_write_policy, final, samples, metrics, files.work))
    barrier(runtime)
    return metrics


def _unsharded(policy: Policy, config: RejectionSamplingConfig, runtime: Runtime) -> Policy:
    """The fine-tuned weights gathered (a collective call) into an ordinary copy of the policy on the main process."""
    state = full_model_state(policy.model)
    if not runtime.main:
        return policy
    copy = load_policy(config.policy, device=torch.device("cpu"), dtype=torch.float32, trainable=False)
    copy.model.load_state_dict(state)
    return copy


def _metrics(
    config: RejectionSamplingConfig,
    samples: Sequence[BestSample],
    training: Sequence[TrainingSample],
    total: int,
    log: list[dict[str, float]],
) -> dict[str, Any]:
    all_scores = [score for sample in samples for score in sample.scores]
    earlier = [sample.source for sample in training if sample.source != THIS_RUN]
    return {
        "config": config_record(config),
        "prompts": len(samples),
        "samples_per_prompt": config.samples_per_prompt,
        "temperature": config.temperature,
        "mean_best_score": sum(sample.score for sample in samples) / len(samples),
        "mean_sample_score": sum(all_scores) / len(all_scores),
        "best_complete_rate": sum(sample.ended for sample in samples) / len(samples),
        "mean_training_score": sum(sample.score for sample in training) / len(training),
        "earlier_samples": {
            "included": config.include_earlier_samples,
            "files": [str(path) for path in config.earlier_samples] if config.include_earlier_samples else [],
            "scored_with": "this run's reward models",
        },
        "from_earlier_iterations": len(earlier),
        "from_earlier_iterations_by_file": {source: earlier.count(source) for source in sorted(set(earlier))},
        "total_steps": total,
        "log": log,
    }


class _LazyScorer:
    """The run's R_c, loaded the first time something needs scoring (a resumed run may need none)."""

    def __init__(self, config: RejectionSamplingConfig, given: Scorer | None, runtime: Runtime) -> None:
        self.config, self.given, self.runtime = config, given, runtime
        self.loaded: Scorer | None = None

    def get(self) -> Scorer:
        """The scorer, sharded across processes under torchrun."""
        if self.loaded is None:
            scorer = self.given or PiecewiseScorer(
                self.config.reward_helpfulness, self.config.reward_safety, device=str(self.runtime.device)
            )
            self.loaded = sharded_scorer(scorer, self.runtime)
        return self.loaded


def _write_lines(path: Path, rows: Sequence[Any]) -> None:
    """Dataclass rows as JSONL, written beside and renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = path.with_name(path.name + ".tmp")
    written.write_text("".join(json.dumps(asdict(row), ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    written.rename(path)


def _training_samples(
    config: RejectionSamplingConfig,
    samples: list[BestSample],
    scorers: _LazyScorer,
    files: RunFiles,
    runtime: Runtime,
    kept: bool,
) -> list[TrainingSample]:
    """The fine-tuning data: this run's best samples pooled with earlier iterations' (unless switched off),
    made once and kept in the work directory (`kept`: an earlier attempt made it)."""
    path = files.work / TRAINING_FILE
    if kept:
        return [TrainingSample(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]
    earlier = config.earlier_samples if config.include_earlier_samples else []
    training = pool_with_earlier(samples, earlier, scorers.get() if earlier else None)
    if runtime.main:
        _write_lines(path, training)
    return training


def _best_samples(
    config: RejectionSamplingConfig,
    policy: Policy,
    scorers: _LazyScorer,
    files: RunFiles,
    runtime: Runtime,
    dtype: torch.dtype,
    kept: bool,
    sharded: bool,
) -> list[BestSample]:
    """The best sample of each train prompt: drawn and scored once, then kept in the work directory (`kept`: an
    earlier attempt drew them). The rollout engine lives only while sampling."""
    samples_path = files.work / SAMPLES_FILE
    if kept:
        return [BestSample(**json.loads(line)) for line in samples_path.read_text(encoding="utf-8").splitlines()]
    rows = load_prompts(config.prompts, "train")
    if not rows:
        raise ValueError(f"{config.prompts} has no train prompts")
    scorer = scorers.get()
    engine = make_engine(
        config.rollout_engine,
        policy,
        runtime,
        checkpoint=str(config.policy),
        sharded=sharded,
        dtype=dtype,
        gpu_memory_utilization=config.vllm_gpu_memory_utilization,
    )
    try:
        with mixed_precision(runtime.device, dtype):
            samples = sample_best(policy, scorer, rows, config, engine=engine, runtime=runtime)
    finally:
        engine.close()
    if runtime.main:
        _write_lines(samples_path, samples)
    return samples


def _write_policy(
    policy: Policy, samples: list[BestSample], metrics: dict[str, Any], work: Path, directory: Path
) -> None:
    """The policy directory with best_samples.jsonl, training_samples.jsonl, metrics.json and the plot."""
    save_policy(policy, directory)
    for name in (SAMPLES_FILE, TRAINING_FILE):
        shutil.copyfile(work / name, directory / name)
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_rejection_sampling(
        samples, metrics["log"], directory / "rejection_sampling.png", from_earlier=metrics["from_earlier_iterations"]
    )
