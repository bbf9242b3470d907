"""`manage.py import_prompts FILE`: add prompts to the pool from JSONL or CSV."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backend.batches.services.prompts import prompts_import
from backend.errors import ServiceError


class Command(BaseCommand):
    help = "Add prompts to the pool from a JSONL or CSV file with 'text' (and 'is_safety', 'is_adversarial', 'tags')."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="The JSONL or CSV file.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            counts = prompts_import(content=options["file"].read_bytes(), created_by=None)
        except (OSError, ServiceError) as error:
            raise CommandError(str(getattr(error, "message", error))) from error
        self.stdout.write(f"{counts['created']} prompts added, {counts['skipped']} already in the pool")
