"""`manage.py export`: build a dataset now, in this process, with a progress bar."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backend.errors import ServiceError
from backend.progress import progress_bar
from exports.services import export_build, export_create
from exports.stats import WHITESPACE
from exports.writers import FORMATS
from preference_format import MARGIN_SCHEME_NAMES


class Command(BaseCommand):
    help = "Export annotated comparisons as versioned JSONL/Parquet files with a manifest.json (TRL's format)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batches", default="", help="Comma-separated batch ids (default: all batches).")
        parser.add_argument("--focus", default="", choices=["", "helpfulness", "safety"], help="Only this focus.")
        parser.add_argument("--since", default="", help="Only annotations made at or after this ISO date-time.")
        parser.add_argument("--until", default="", help="Only annotations made before this ISO date-time.")
        parser.add_argument("--drop-unsure", action="store_true", help="Leave out 'negligibly better / unsure'.")
        parser.add_argument(
            "--include-gold", action="store_true", help="Keep gold (quality-control) comparisons, left out by default."
        )
        parser.add_argument("--formats", default=",".join(FORMATS), help="jsonl, parquet or both (comma-separated).")
        parser.add_argument(
            "--granularity",
            default="comparison",
            choices=["comparison", "annotation"],
            help="One row per comparison (majority of its annotations, agreement recorded) or per annotation.",
        )
        parser.add_argument("--margin", default="none", choices=MARGIN_SCHEME_NAMES, help="Llama 2 margins.")
        parser.add_argument("--mix", default="", choices=["", "helpfulness", "safety"], help="A reward-model mix.")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the mix's sampling.")
        parser.add_argument(
            "--test-mix",
            action="store_true",
            help="Let a mix's test file take the test rows of the data sampled into it (default: its own focus only).",
        )
        parser.add_argument("--tokenizer", default=WHITESPACE, help="'whitespace' or a tokenizer directory.")

    def handle(self, *args: Any, **options: Any) -> None:
        filters = {
            "batches": [int(b) for b in options["batches"].split(",") if b.strip()],
            "focus": options["focus"],
            "since": options["since"],
            "until": options["until"],
            "drop_unsure": options["drop_unsure"],
            "include_gold": options["include_gold"],
        }
        try:
            run, _ = export_create(
                created_by=None,
                enqueue=lambda run_id: None,  # built right here, below
                filters=filters,
                formats=[f.strip() for f in options["formats"].split(",") if f.strip()],
                granularity=options["granularity"],
                margin_scheme=options["margin"],
                mix=options["mix"],
                test_mix=options["test_mix"],
                seed=options["seed"],
                tokenizer=options["tokenizer"],
            )
        except ServiceError as error:
            raise CommandError(f"{error.field or 'input'}: {error.message}") from error
        with progress_bar(f"export {run.pk}", unit="row") as bar:

            def progress(written: int, expected: int) -> None:
                bar.show(written, max(expected, written))

            run = export_build(run_id=run.pk, on_progress=progress)
        self.stdout.write(self.style.SUCCESS(f"Export {run.pk}: {run.rows_written} rows in {run.directory}"))
