"""Where a PPO iteration spends its time, and what batched generation buys inside it.

    python bench/ppo.py [--policy DIR] [--device cpu|cuda] [--iterations 3] [--rollout-batch-size 32]
                        [--rollout-engine transformers|vllm]

Runs `train_ppo` for a few iterations with a real reward model (built on the policy's backbone, so the
value model starts from it) and prints, for every PPO step, its time split into generate / score / train
(train: the no-grad passes of policy, reference and value over the rollout, then the optimisation), with
generation's share; then the mean of one iteration in four phases, each as a share (the first iteration is a
warm-up and left out of the mean). With `--rollout-engine vllm` generation includes loading the new weights.
Then it samples the same rollout batch batched (one generate() call, left padding) and one prompt at a time,
and prints the ratio. Default:
a tiny random Llama on CPU; `--policy` takes any checkpoint directory, e.g. SmolLM2-135M prepared by
`sampler.engines.smollm2.prepare_smollm2_checkpoint`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from sampler.engines.tiny import build_tiny_checkpoint  # noqa: E402
from training.policy import load_policy, resolve_device, training_dtype  # noqa: E402
from training.ppo import PPOConfig, train_ppo  # noqa: E402
from training.reward_model import load_backbone, save_reward_model  # noqa: E402
from training.rollout import encode_prompts, generate, load_prompts  # noqa: E402

PHASES = ("generation", "scoring", "passes", "optimisation")
TOPICS = ("the sea", "Paris", "a good answer", "the wind", "numbers", "a lazy dog", "the sky", "thank you notes")


def write_prompts(path: Path, count: int) -> Path:
    with path.open("w") as handle:
        for i in range(count):
            prompt = [{"role": "user", "content": f"Write {1 + i % 4} sentences about {TOPICS[i % len(TOPICS)]}."}]
            handle.write(json.dumps({"prompt": prompt, "is_safety": False, "split": "test" if i % 8 == 7 else "train"}))
            handle.write("\n")
    return path


def print_steps(log: list[dict[str, float]]) -> None:
    """Each PPO step's time split into generate / score / train, and generation's share of the step."""
    print("per PPO step:    generate      score      train   generate share")
    for entry in log:
        generate, score = entry["time/generation"], entry["time/scoring"]
        train = entry["time/passes"] + entry["time/optimisation"]
        total = generate + score + train
        print(
            f"  step {int(entry['iteration']):>3}  {generate:8.2f} s {score:8.2f} s {train:8.2f} s"
            f"   {100 * generate / total:5.1f} %"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, help="Policy checkpoint directory (default: a tiny random Llama).")
    parser.add_argument("--reward", type=Path, help="Reward-model directory (default: a fresh head on the policy).")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument("--iterations", type=int, default=3, help="PPO iterations (the first is a warm-up).")
    parser.add_argument("--rollout-batch-size", type=int, default=32)
    parser.add_argument("--minibatch-size", type=int, default=8)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rollout-engine", default="transformers", help="transformers or vllm (GPU).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        policy = args.policy or build_tiny_checkpoint(work / "policy", hidden_size=64, eos_boost=2.0)
        reward = args.reward
        if reward is None:
            model, tokenizer = load_backbone(policy)
            reward = work / "reward"
            save_reward_model(model, tokenizer, reward, mean=0.0, std=1.0)
        prompts = write_prompts(work / "prompts.jsonl", 2 * args.rollout_batch_size)
        config = PPOConfig(
            policy=policy,
            reward_helpfulness=reward,
            reward_safety=None,
            prompts=prompts,
            output_dir=work / "out",
            iterations=args.iterations,
            rollout_batch_size=args.rollout_batch_size,
            minibatch_size=args.minibatch_size,
            micro_batch_size=args.micro_batch_size,
            max_new_tokens=args.max_new_tokens,
            eval_every=args.iterations,
            eval_prompts=8,
            device=args.device,
            rollout_engine=args.rollout_engine,
        )
        metrics = train_ppo(config)
        print_steps(metrics["log"])
        timed = metrics["log"][1:] or metrics["log"]
        seconds = {phase: sum(entry[f"time/{phase}"] for entry in timed) / len(timed) for phase in PHASES}
        total = sum(seconds.values())
        device = resolve_device(args.device)
        print(f"policy {policy.name}, {device}, rollout {args.rollout_batch_size} x <= {args.max_new_tokens} tokens,")
        print(f"value model from the {metrics['value_init']}; mean of {len(timed)} iteration(s)")
        print(f"one PPO iteration: {total:.2f} s")
        for phase in PHASES:
            print(f"  {phase:<13} {seconds[phase]:7.2f} s  {100 * seconds[phase] / total:5.1f} %")

        loaded = load_policy(policy, device=device, dtype=training_dtype(device, None), trainable=False)
        rows = load_prompts(prompts, "train")[: args.rollout_batch_size]
        encoded = encode_prompts(loaded, [row.prompt for row in rows])
        timings = {}
        for label, batch_size in (("batched", None), ("one at a time", 1)):
            started = time.perf_counter()
            rollout = generate(
                loaded,
                encoded,
                temperature=1.0,
                top_p=1.0,
                max_new_tokens=args.max_new_tokens,
                seed=0,
                batch_size=batch_size,
            )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - started
            tokens = int(rollout.mask.sum())
            timings[label] = elapsed / tokens
            print(f"generation {label:<13} {elapsed:7.2f} s, {tokens} tokens, {tokens / elapsed:8.1f} tokens/s")
        print(f"batched generation speed-up (per token): {timings['one at a time'] / timings['batched']:.1f}x")


if __name__ == "__main__":
    main()
