"""`python -m training.ppo_cli`: PPO on a policy with the Llama 2 piecewise reward, with a progress bar."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.cli import add_policy_arguments
from training.ppo import PPOConfig, train_ppo


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.ppo_cli",
        description="PPO on a Hugging Face policy (Llama 2, 3.2.3): reward whiten(logit(R_c)) - beta * KL.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_policy_arguments(p, policy_help="Policy directory (also the frozen reference).")
    p.add_argument("--output", type=Path, required=True, help="Where to write the new policy directory.")
    p.add_argument("--learning-rate", type=float, default=1e-6, help="Constant policy learning rate.")
    p.add_argument("--value-learning-rate", type=float, help="Value model learning rate (default: the policy's).")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay.")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="Gradient clipping norm, per model.")
    p.add_argument("--clip-range", type=float, default=0.2, help="PPO ratio clip.")
    p.add_argument("--value-clip", type=float, default=0.2, help="Value prediction clip.")
    p.add_argument("--kl-beta", type=float, default=0.01, help="Per-token KL penalty (0.005 above 13B).")
    p.add_argument("--iterations", type=int, default=200, help="PPO iterations, one rollout batch each.")
    p.add_argument("--rollout-batch-size", type=int, default=512, help="Prompts per iteration.")
    p.add_argument("--minibatch-size", type=int, default=64, help="Responses per gradient step.")
    p.add_argument("--micro-batch-size", type=int, default=8, help="Responses per forward pass.")
    p.add_argument("--temperature", type=float, default=1.0, help="Sampling temperature.")
    p.add_argument("--top-p", type=float, default=1.0, help="Nucleus sampling.")
    p.add_argument("--max-new-tokens", type=int, default=256, help="Longest response.")
    p.add_argument("--missing-eos-penalty", type=float, default=1.0, help="Score penalty for a response without EOS.")
    p.add_argument("--gamma", type=float, default=1.0, help="Discount.")
    p.add_argument("--lam", type=float, default=0.95, help="GAE lambda.")
    p.add_argument("--eval-every", type=int, default=10, help="Iterations between held-out evaluations.")
    p.add_argument("--eval-prompts", type=int, default=128, help="Held-out prompts per evaluation.")
    p.add_argument("--early-stopping-patience", type=int, default=3, help="Evaluations without a new best.")
    p.add_argument("--seed", type=int, default=0, help="Prompt draws, sampling and minibatch order.")
    p.add_argument("--checkpoint-every", type=int, default=10, help="Iterations between resumable checkpoints.")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda.")
    p.add_argument(
        "--bf16", choices=["auto", "on", "off"], default="auto", help="bf16 compute, fp32 weights (auto: on GPU only)."
    )
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    config = PPOConfig(
        policy=args.policy,
        reward_helpfulness=args.reward_helpfulness,
        reward_safety=args.reward_safety,
        prompts=args.prompts,
        output_dir=args.output,
        learning_rate=args.learning_rate,
        value_learning_rate=args.value_learning_rate,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        clip_range=args.clip_range,
        value_clip=args.value_clip,
        kl_beta=args.kl_beta,
        iterations=args.iterations,
        rollout_batch_size=args.rollout_batch_size,
        minibatch_size=args.minibatch_size,
        micro_batch_size=args.micro_batch_size,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        missing_eos_penalty=args.missing_eos_penalty,
        gamma=args.gamma,
        lam=args.lam,
        eval_every=args.eval_every,
        eval_prompts=args.eval_prompts,
        early_stopping_patience=args.early_stopping_patience,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        bf16=None if args.bf16 == "auto" else args.bf16 == "on",
    )
    with tqdm(desc="PPO", unit="iteration") as bar:

        def progress(step: int, total: int, entry: dict[str, float]) -> None:
            bar.total = total
            bar.n = step
            bar.set_postfix(score=f"{entry['rollout/score']:.3f}", kl=f"{entry['ppo/kl']:.3f}")

        metrics = train_ppo(config, progress=progress)
    summary = ("heldout_reward_before", "heldout_reward_after", "iterations_run", "stopped_early", "value_init")
    print(json.dumps({key: metrics[key] for key in summary if key in metrics}))
    return metrics


if __name__ == "__main__":
    main()
