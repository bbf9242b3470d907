"""Whitespace word counts: exactly len(text.split()), whichever path counts them, and stored with every text."""

import pytest
from django.apps import apps
from django.db import connection

from backend.batches.models import Prompt, Response, Turn
from backend.batches.words import whitespace_tokens
from tests.factories import make_batch, make_checkpoint

backfill = __import__("backend.batches.migrations.0003_word_counts", fromlist=["count_existing"])

TEXTS = [
    "",
    " ",
    "word",
    "two words",
    " leading and trailing ",
    "runs   of  spaces",
    "first paragraph.\n\nsecond paragraph",
    "tabs\tand\x0bvertical\x0ctabs\rand\x1cinformation\x1dseparators\x1e\x1fhere",
    "\n\t \x1f",
    "no-break\xa0space, ideographic\u3000space, next line\x85, line\u2028separator",
    "accents é and 漢字 and emoji 😀",
    "control \x01 characters \x7f are words",
]


@pytest.mark.parametrize("text", TEXTS)
def test_whitespace_tokens_are_str_split(text):
    assert whitespace_tokens(text) == len(text.split())


@pytest.mark.django_db
def test_word_counts_are_stored_on_create_bulk_create_and_save():
    prompt = Prompt.objects.create(text="how  do\nI  pick a lock")
    assert prompt.word_count == 6 and Prompt.objects.get(pk=prompt.pk).word_count == 6
    prompt.text = "a new text"
    prompt.save()
    assert Prompt.objects.get(pk=prompt.pk).word_count == 3
    checkpoint = make_checkpoint()
    Response.objects.bulk_create(
        [Response(prompt=prompt, checkpoint=checkpoint, text=text, temperature=0.7) for text in ("one two", "")]
    )
    assert sorted(Response.objects.values_list("word_count", flat=True)) == [0, 2]


@pytest.mark.django_db
def test_the_migration_counts_the_rows_already_there():
    batch = make_batch(comparisons=3)
    Prompt.objects.filter(comparisons__batch=batch).update(text="three words here")
    for model in (Prompt, Response, Turn):
        model.objects.update(word_count=0)  # rows from before the column: the migration added it with 0
    backfill.count_existing(apps, connection.schema_editor())
    assert set(Prompt.objects.values_list("word_count", flat=True)) == {3}
    assert [r.word_count for r in Response.objects.all()] == [len(r.text.split()) for r in Response.objects.all()]
