"""`manage.py train_reward_model`: train and register a reward model on a finished export, here and now."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backend.checkpoints.models import TrainingRun
from backend.errors import ServiceError
from backend.progress import progress_bar
from loop.services import training_runs


class Command(BaseCommand):
    help = "Train a reward model (helpfulness or safety) on an export and register it as a reward checkpoint."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--export", type=int, required=True, help="Id of a finished export run.")
        parser.add_argument("--kind", choices=TrainingRun.Kind.values, default="reward_helpfulness", help="Which RM.")
        backbone = parser.add_mutually_exclusive_group(required=True)
        backbone.add_argument("--checkpoint", type=int, help="Id of a registered checkpoint to start from.")
        backbone.add_argument("--builtin", help="A built-in backbone, e.g. all-minilm-l6-v2.")
        parser.add_argument("--batch-size", type=int, help="Pairs per optimizer step (default 512).")
        parser.add_argument("--micro-batch-size", type=int, help="Pairs per forward pass (default 8).")
        parser.add_argument("--learning-rate", type=float, help="Peak learning rate (default 1e-5).")
        parser.add_argument("--max-length", type=int, help="Tokens per (dialogue, reply) (default 512).")

    def handle(self, *args: Any, **options: Any) -> None:
        config = {
            key: options[key]
            for key in ("batch_size", "micro_batch_size", "learning_rate", "max_length")
            if options[key] is not None
        }
        try:
            run, _ = training_runs.training_run_create(
                kind=options["kind"],
                export_id=options["export"],
                base_checkpoint_id=options["checkpoint"],
                builtin_backbone=options["builtin"] or "",
                config=config,
                created_by=None,
                enqueue=lambda run_id: None,  # run right here, below
            )
        except ServiceError as error:
            raise CommandError(f"{error.field or 'input'}: {error.message}") from error
        with progress_bar(f"training run {run.pk}", unit="step") as bar:

            def progress(step: int, total: int, entry: dict[str, float]) -> None:
                bar.show(step, total, loss=f"{entry['train/loss']:.4f}")

            run = training_runs.training_run_execute(run_id=run.pk, on_progress=progress)
        accuracy = (run.metrics.get("eval") or {}).get("accuracy")
        self.stdout.write(
            self.style.SUCCESS(f"Run {run.pk} {run.status}: {run.output_checkpoint} (test accuracy {accuracy}%)")
        )
