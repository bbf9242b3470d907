"""Stored whitespace word counts for prompts, responses and dialogue turns, counted for the rows already there."""

from django.db import migrations

import backend.batches.models
from backend.batches.words import whitespace_tokens

BACKFILL_CHUNK = 2000


def count_existing(apps, schema_editor):
    """Fill word_count from the text, a chunk of rows at a time (historical models have no pre_save)."""
    for model_name, source in (("Prompt", "text"), ("Response", "text"), ("Turn", "content")):
        model = apps.get_model("batches", model_name)
        last_id = 0
        while chunk := list(model.objects.filter(pk__gt=last_id).order_by("pk").only("pk", source)[:BACKFILL_CHUNK]):
            for row in chunk:
                row.word_count = whitespace_tokens(getattr(row, source))
            model.objects.bulk_update(chunk, ["word_count"])
            last_id = chunk[-1].pk


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0002_gold_and_selection"),
    ]

    operations = [
        migrations.AddField(
            model_name="prompt",
            name="word_count",
            field=backend.batches.models.WordCountField(
                default=0,
                editable=False,
                help_text="Whitespace-separated words in text, counted when the row is saved.",
                source="text",
            ),
        ),
        migrations.AddField(
            model_name="response",
            name="word_count",
            field=backend.batches.models.WordCountField(
                default=0,
                editable=False,
                help_text="Whitespace-separated words in text, counted when the row is saved.",
                source="text",
            ),
        ),
        migrations.AddField(
            model_name="turn",
            name="word_count",
            field=backend.batches.models.WordCountField(
                default=0,
                editable=False,
                help_text="Whitespace-separated words in content, counted when the row is saved.",
                source="content",
            ),
        ),
        migrations.RunPython(count_existing, migrations.RunPython.noop),
    ]
