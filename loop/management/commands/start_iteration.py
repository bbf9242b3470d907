"""`manage.py start_iteration`: one turn of the loop (export, reward models, policy training), here and now."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backend.errors import ServiceError
from loop.management.progress import iteration_run_shown
from loop.models import Iteration
from loop.services.iterations import iteration_create


def _ids(value: str) -> list[int]:
    return [int(part) for part in value.split(",") if part.strip()]


class Command(BaseCommand):
    help = (
        "Start an iteration of the RLHF loop on annotated batches (or an existing export) and run it in this "
        "process with a progress bar: export, helpfulness and safety reward models, rejection sampling and/or "
        "PPO, then the new policy checkpoint and its held-out evaluation. Resumes an unfinished one with --resume."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--batches", type=_ids, help="Comma-separated batch ids, e.g. 3,4.")
        source.add_argument("--export", type=int, help="Id of a finished export to train on instead.")
        source.add_argument("--resume", type=int, help="Id of an unfinished or failed iteration to continue.")
        parser.add_argument("--base-policy", type=int, help="Id of the policy checkpoint to improve.")
        parser.add_argument("--methods", default="ppo", help="rejection_sampling and/or ppo, comma-separated.")
        backbone = parser.add_mutually_exclusive_group()
        backbone.add_argument("--reward-checkpoint", type=int, help="Reward models' backbone: a checkpoint id.")
        backbone.add_argument("--reward-builtin", help="Reward models' backbone: a built-in, e.g. all-minilm-l6-v2.")
        parser.add_argument(
            "--config", type=json.loads, default={}, help='Overrides per step, e.g. \'{"ppo": {"iterations": 50}}\'.'
        )
        parser.add_argument(
            "--evaluation-reward-models",
            type=_ids,
            default=[],
            help="Comma-separated reward-model checkpoint ids that also score the held-out answers.",
        )
        parser.add_argument(
            "--temperature-scan",
            action="store_true",
            help='Scan the base policy\'s temperatures after the reward models (settings: config "temperature_scan"; '
            'rejection sampling\'s "temperature": "scan" takes the best one).',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["resume"]:
            found = Iteration.objects.filter(pk=options["resume"]).first()
            if found is None:
                raise CommandError("resume: no iteration with this id.")
            iteration = found
            if iteration.status == Iteration.Status.FAILED:
                Iteration.objects.filter(pk=iteration.pk).update(status=Iteration.Status.QUEUED, error="")
        else:
            try:
                iteration, _ = iteration_create(
                    created_by=None,
                    enqueue=lambda _: None,  # run right here, below
                    base_policy_id=options["base_policy"] or 0,
                    methods=[m.strip() for m in options["methods"].split(",") if m.strip()],
                    batch_ids=options["batches"] or [],
                    export_id=options["export"],
                    reward_backbone_id=options["reward_checkpoint"],
                    reward_builtin_backbone=options["reward_builtin"] or "",
                    config=options["config"],
                    evaluation_reward_model_ids=options["evaluation_reward_models"],
                    scan_temperatures=options["temperature_scan"],
                )
            except ServiceError as error:
                raise CommandError(f"{error.field or 'input'}: {error.message}") from error
        iteration = iteration_run_shown(iteration=iteration)
        if iteration.status != Iteration.Status.DONE:
            raise CommandError(f"Iteration {iteration.pk} failed at {iteration.step}: {iteration.error}")
        evaluation = iteration.evaluation
        self.stdout.write(
            self.style.SUCCESS(
                f"Iteration {iteration.pk} done: new policy {iteration.new_policy}; held-out mean reward "
                f"{evaluation.get('new_mean_reward'):.3f} (new) vs {evaluation.get('previous_mean_reward'):.3f} "
                f"(previous {iteration.base_policy.name})."
            )
        )
        for model in (m for m in evaluation.get("by_reward_model", []) if m["gain"] is not None):
            optimised = "optimised against" if model["optimised"] else "not optimised against"
            self.stdout.write(
                f"  {model['checkpoint']} ({model['source']}, {optimised}): {model['previous_mean_reward']:.3f} -> "
                f"{model['new_mean_reward']:.3f} (gain {model['gain']:+.3f})"
            )
