"""`manage.py import_preferences FILE --source NAME [--harmless]`: open-source pairs in Anthropic HH format."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backend.errors import ServiceError
from exports.imports import preferences_import


class Command(BaseCommand):
    help = "Import open-source preference pairs (JSONL with Anthropic HH 'chosen' and 'rejected' transcripts)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="The JSONL file.")
        parser.add_argument("--source", required=True, help="A name for the data, e.g. anthropic-hh-harmless.")
        parser.add_argument("--harmless", action="store_true", help="Harmlessness data (used in the safety mix).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            counts = preferences_import(
                content=options["file"].read_bytes(), source=options["source"], harmless=options["harmless"]
            )
        except (OSError, ServiceError) as error:
            raise CommandError(str(getattr(error, "message", error))) from error
        self.stdout.write(f"{counts['created']} pairs added, {counts['skipped']} already there")
