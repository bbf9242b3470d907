"""`manage.py demo_loop`: one whole turn of the RLHF loop on CPU with small models, and its learning signal.

The annotations come from a SIMULATED annotator (user `simulated-annotator`) that prefers the shorter response,
so the measurable signal is that the new policy answers held-out prompts more briefly than the previous one.
"""

import json
from pathlib import Path
from statistics import fmean
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from backend.batches.models import Batch, Focus, Prompt
from backend.batches.services.batches import batch_create, batch_open
from backend.batches.services.prompts import prompt_create
from backend.checkpoints.models import Checkpoint
from loop.management.progress import iteration_run_shown
from loop.models import Iteration
from loop.selectors import human_win_rate, human_win_rate_by_temperature, leaderboard
from loop.services.iterations import iteration_create
from loop.services.simulated_annotator import RULE, SIMULATED_ANNOTATOR, simulated_annotate
from loop.services.templates import template_create, weekly_batches_run
from loop.win_rate import WinRate
from sampler.services import batch_start_sampling
from sampler.tasks import enqueue_chunk

DEMO_PROMPTS = Path(__file__).resolve().parents[2] / "demo" / "loop_prompts.json"
POLICY_NAME = "smollm2-135m-instruct"  # what seed_demo registers
BATCH_NAME = "demo-loop-week-1"
# Replies in the batch and in rejection sampling (hence in the evaluation, which takes the policy step's budget):
# long enough that most end with EOS, so that "shorter" is a real difference rather than two cut-off replies.
REPLY_TOKENS = 96
# Demo-sized settings: a few prompts and steps, higher learning rates than Llama 2's (which assume 512-pair batches).
# The reward model sees ~30 pairs, so it takes many epochs (about a minute on CPU) to learn the rule.
DEMO_CONFIG: dict[str, dict[str, Any]] = {
    "reward": {"batch_size": 8, "micro_batch_size": 8, "max_length": 256, "learning_rate": 2e-4, "epochs": 10},
    "rejection_sampling": {
        "samples_per_prompt": 4,
        "max_new_tokens": REPLY_TOKENS,
        "generation_batch_size": 32,
        "batch_size": 4,
        "micro_batch_size": 4,
        "max_length": 256,
        "learning_rate": 1e-4,
        "epochs": 2,
    },
    "ppo": {
        "iterations": 4,
        "rollout_batch_size": 8,
        "minibatch_size": 4,
        "micro_batch_size": 4,
        "max_new_tokens": 48,
        "eval_every": 2,
        "eval_prompts": 8,
        "learning_rate": 5e-6,
    },
}


class Command(BaseCommand):
    help = (
        "Run one whole iteration of the loop on the embedded defaults: seed, sample a batch, judge it with a "
        "simulated annotator (prefers the shorter reply), export, train both reward models, rejection sampling "
        "and/or PPO, register the new policy, make next week's batch from it and the previous one, and print "
        "the learning signal."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--methods",
            default="rejection_sampling",
            help="rejection_sampling and/or ppo, comma-separated (PPO adds minutes on CPU for little at demo size).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING("1/6 Seeding: demo users, the SmolLM2 policy, demo batches"))
        call_command("seed_demo", max_new_tokens=64, stdout=self.stdout)
        policy = Checkpoint.objects.get(name=POLICY_NAME)

        self.stdout.write(self.style.MIGRATE_HEADING(f"2/6 Sampling {BATCH_NAME} from {policy.name}"))
        sampled = self._sampled_batch(policy)
        held_out = sampled.comparisons.filter(is_held_out=True).count()
        self.stdout.write(
            f"  {sampled.name}: {sampled.comparisons.count()} pairs, open; {held_out} held out as its test split "
            f"(each prompt's split drawn at {sampled.held_out_fraction:g} when its pair was made)"
        )

        self.stdout.write(self.style.MIGRATE_HEADING(f"3/6 Judging with the SIMULATED annotator: {RULE}"))
        batches = list(Batch.objects.filter(name__in=["demo-helpfulness", "demo-safety", BATCH_NAME]))
        for each in batches:
            judged = simulated_annotate(batch=each)
            self.stdout.write(f"  {each.name}: {judged} new judgements by '{SIMULATED_ANNOTATOR}'")

        self.stdout.write(self.style.MIGRATE_HEADING("4/6 The iteration: export, reward models, policy training"))
        iteration = self._iteration(policy, batches, [m.strip() for m in options["methods"].split(",") if m.strip()])
        if iteration.status != Iteration.Status.DONE:
            raise CommandError(f"Iteration {iteration.pk} failed: {iteration.error}")
        new = iteration.new_policy
        assert new is not None
        self.stdout.write(f"  registered {new.name} (parent {new.parent.name if new.parent else '-'})")
        self._export_splits(iteration)

        self.stdout.write(self.style.MIGRATE_HEADING("5/6 Next week's batch from a template: new vs previous policy"))
        template, _ = template_create(
            created_by=None, name="demo-weekly", size=8, max_new_tokens=64, temperatures=[0.7, 1.0], held_out_size=0
        )
        made = [weekly for weekly in weekly_batches_run() if weekly.template_id == template.pk]
        next_batch = Batch.objects.get(pk=made[0].batch_id)
        names = sorted(c.name for c in next_batch.checkpoints.all())
        self.stdout.write(f"  {next_batch.name} ({next_batch.status}) samples {' and '.join(names)}")

        self.stdout.write(self.style.MIGRATE_HEADING("6/6 The learning signal"))
        self._signal(iteration)
        simulated_annotate(batch=next_batch)
        self._win_rates(new, iteration.base_policy, next_batch)
        self.stdout.write("  Leaderboard of policies from the (simulated) votes, Bradley-Terry:")
        for rating in leaderboard():
            self.stdout.write(
                f"    {rating.name:<40} {rating.score:7.1f}  [{rating.low:7.1f}, {rating.high:7.1f}]  "
                f"{rating.wins}/{rating.games} wins"
            )
        self.stdout.write(self.style.SUCCESS(f"\nDone: iteration {iteration.pk}; run `make demo` to browse it."))

    def _sampled_batch(self, policy: Checkpoint) -> Batch:
        texts = json.loads(DEMO_PROMPTS.read_text())[Focus.HELPFULNESS]
        for text in texts:
            if not Prompt.objects.filter(text=text, author=None).exists():
                prompt_create(text=text, author=None)
        batch, _ = batch_create(
            name=BATCH_NAME,
            target_comparisons=len(texts),
            created_by=None,
            checkpoint_ids=[policy.pk],
            temperatures=[0.7, 1.2],
            max_new_tokens=REPLY_TOKENS,
            held_out_fraction=0.4,  # about 12 of the 30 prompts: the held-out prompts of the learning signal
        )
        if batch.status == Batch.Status.DRAFT:
            batch_start_sampling(batch=batch, enqueue=enqueue_chunk)  # eager Celery: sampled right here
            batch.refresh_from_db()
        if batch.status != Batch.Status.OPEN:
            batch = batch_open(batch=batch)
        return batch

    def _iteration(self, policy: Checkpoint, batches: list[Batch], methods: list[str]) -> Iteration:
        iteration, _ = iteration_create(
            created_by=None,
            enqueue=lambda _: None,  # run right here, below
            base_policy_id=policy.pk,
            methods=methods,
            batch_ids=[b.pk for b in batches],
            reward_builtin_backbone="all-minilm-l6-v2",
            # Reward models of earlier demo runs (none on a fresh database) judge the new policy too: a policy
            # that gamed this run's models would show it there.
            evaluation_reward_model_ids=list(
                Checkpoint.objects.filter(kind__startswith="reward_").order_by("pk").values_list("pk", flat=True)
            ),
            config={key: value for key, value in DEMO_CONFIG.items() if key == "reward" or key in methods},
            client_key=f"demo-loop-{timezone.now():%Y%m%d%H%M%S}",
        )
        iteration = iteration_run_shown(iteration=iteration)
        return iteration

    def _export_splits(self, iteration: Iteration) -> None:
        """The held-out counts of the iteration's exports, per focus and strength, as their manifests give them."""
        for export in (iteration.helpfulness_export, iteration.safety_export):
            if export is None:
                continue
            for split, counts in export.manifest.get("counts", {}).get("by_split", {}).items():
                strengths = ", ".join(f"{name} {count}" for name, count in counts["strength"].items())
                focus = ", ".join(f"{name} {count}" for name, count in counts["focus"].items())
                self.stdout.write(f"  export {export.pk} {split}: {focus}; by strength: {strengths}")

    def _win_rates(self, new: Checkpoint, previous: Checkpoint, batch: Batch) -> None:
        """New against previous in next week's batch, pooled and per temperature stratum."""
        pooled = human_win_rate(new=new, previous=previous, batch=batch)
        strata = human_win_rate_by_temperature(new=new, previous=previous, batch=batch)
        self.stdout.write(f"  New against previous in {batch.name} (simulated votes): {_win(pooled)}")
        for stratum, rate in strata.items():
            self.stdout.write(f"    {stratum}: {_win(rate)}")

    def _signal(self, iteration: Iteration) -> None:
        evaluation = iteration.evaluation
        samples = evaluation["samples"]
        new_length = fmean(len(s["new"]) for s in samples)
        old_length = fmean(len(s["previous"]) for s in samples)
        shorter = sum(len(s["new"]) < len(s["previous"]) for s in samples)
        self.stdout.write(
            f"  On {len(samples)} held-out prompts (same seeds for both policies):\n"
            f"    the rule (shorter is better): new replies average {new_length:.0f} characters, "
            f"previous {old_length:.0f}; the new one is shorter on {shorter} of {len(samples)}\n"
            f"    mean reward R_c: new {evaluation['new_mean_reward']:.3f}, "
            f"previous {evaluation['previous_mean_reward']:.3f}"
        )
        self.stdout.write("  Held-out reward under each reward model (optimised: the ones the policy was trained on):")
        for model in evaluation.get("by_reward_model", []):
            role = "optimised" if model["optimised"] else model["source"]
            figures = (
                "no held-out prompts"
                if model["gain"] is None
                else f"previous {model['previous_mean_reward']:.3f} -> new {model['new_mean_reward']:.3f} "
                f"({model['gain']:+.3f})"
            )
            self.stdout.write(f"    {model['checkpoint']:<44} {role:<12} {figures}")
        learned = new_length < old_length and shorter > len(samples) / 2
        verdict = "learned the rule" if learned else "did NOT learn the rule this time"
        style = self.style.SUCCESS if learned else self.style.WARNING
        self.stdout.write(style(f"  The new policy {verdict}."))


def _win(rate: WinRate) -> str:
    if rate.rate is None:
        return "no votes"
    return f"{rate.wins}/{rate.games} = {rate.rate:.2f} [{rate.low:.2f}, {rate.high:.2f}]"
