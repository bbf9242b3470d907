import re

import pytest

from backend.batches.models import Comparison, Prompt, PromptSource
from backend.batches.services.annotations import (
    annotation_submit,
    assignment_lease_comparison,
    assignment_lease_next,
    assignment_skip,
)
from backend.batches.services.batches import batch_open
from backend.batches.services.prompts import CONTINUE_SKIPPED, PROMPT_TEXT_REQUIRED, dialogue_continue, prompt_create
from backend.errors import Conflict, InvalidInput
from tests.factories import make_batch, make_comparison

pytestmark = pytest.mark.django_db


def judged(annotator, choice="a"):
    batch = make_batch(comparisons=1)
    assignment = assignment_lease_next(batch=batch, annotator=annotator)
    assert assignment is not None
    annotation, _ = annotation_submit(
        assignment_id=assignment.pk, annotator=annotator, choice=choice, strength="better", idempotency_key="j"
    )
    return annotation


def test_the_chosen_response_becomes_context_for_the_next_turn(annotator):
    annotation = judged(annotator, choice="b")
    prompt, created = dialogue_continue(annotation_id=annotation.pk, annotator=annotator, next_message="And then?")
    assert created and prompt.source == PromptSource.DIALOGUE and prompt.text == "And then?"
    assert prompt.dialogue is not None
    turns = [(t.role, t.content) for t in prompt.dialogue.turns.all()]
    assert turns == [("user", annotation.comparison.prompt.text), ("assistant", annotation.chosen_response.text)]


def test_a_third_turn_carries_the_whole_dialogue(annotator):
    first = judged(annotator)
    second_prompt, _ = dialogue_continue(annotation_id=first.pk, annotator=annotator, next_message="Second?")
    batch = make_batch(comparisons=0, open_it=False)
    make_comparison(batch, prompt=second_prompt)
    batch = batch_open(batch=batch)
    assignment = assignment_lease_next(batch=batch, annotator=annotator)
    assert assignment is not None
    second, _ = annotation_submit(
        assignment_id=assignment.pk, annotator=annotator, choice="a", strength="better", idempotency_key="two"
    )
    third_prompt, _ = dialogue_continue(annotation_id=second.pk, annotator=annotator, next_message="Third?")
    assert third_prompt.dialogue is not None
    roles = [t.role for t in third_prompt.dialogue.turns.all()]
    assert roles == ["user", "assistant", "user", "assistant"]


def test_retrying_with_the_same_key_makes_one_prompt(annotator):
    annotation = judged(annotator)
    one, _ = dialogue_continue(annotation_id=annotation.pk, annotator=annotator, next_message="Go on", client_key="c")
    two, created = dialogue_continue(
        annotation_id=annotation.pk, annotator=annotator, next_message="Go on", client_key="c"
    )
    assert one.pk == two.pk and not created
    assert Prompt.objects.filter(source=PromptSource.DIALOGUE).count() == 1


def test_a_skip_cannot_be_continued_and_the_message_must_not_be_empty(annotator):
    batch = make_batch(comparisons=1)
    assignment = assignment_lease_next(batch=batch, annotator=annotator)
    assert assignment is not None
    skip, _ = assignment_skip(
        assignment_id=assignment.pk, annotator=annotator, reason="both_empty", idempotency_key="s"
    )
    with pytest.raises(Conflict, match=re.escape(CONTINUE_SKIPPED)):
        dialogue_continue(annotation_id=skip.pk, annotator=annotator, next_message="more")
    with pytest.raises(InvalidInput, match=re.escape(PROMPT_TEXT_REQUIRED)):
        dialogue_continue(annotation_id=skip.pk, annotator=annotator, next_message="   ")


def test_prompt_create_dedupes_on_client_key(annotator):
    one, _ = prompt_create(text="Write a haiku", author=annotator, source="annotator", client_key="p1")
    two, created = prompt_create(text="Write a haiku", author=annotator, source="annotator", client_key="p1")
    assert one.pk == two.pk and not created
    with pytest.raises(InvalidInput) as error:
        prompt_create(text="x", author=annotator, tags=["ok", 3])  # type: ignore[list-item]  # a non-string tag, on purpose
    assert error.value.field == "tags"


def test_every_turn_of_a_dialogue_lands_in_the_split_of_its_first_turn(annotator):
    batch = make_batch(comparisons=0, open_it=False, held_out_size=1000, held_out_fraction=0.5)
    openers = [make_comparison(batch) for _ in range(12)]
    batch = batch_open(batch=batch)
    for number, comparison in enumerate(openers):
        for turn in range(3):
            assignment = assignment_lease_comparison(comparison=comparison, annotator=annotator)
            assert assignment is not None
            annotation, _ = annotation_submit(
                assignment_id=assignment.pk,
                annotator=annotator,
                choice="a",
                strength="better",
                idempotency_key=f"{number}-{turn}",
            )
            prompt, _ = dialogue_continue(
                annotation_id=annotation.pk, annotator=annotator, next_message=f"Then {turn}?"
            )
            comparison = make_comparison(batch, prompt=prompt)
            assert comparison.is_held_out == openers[number].is_held_out
    assert Comparison.objects.filter(batch=batch).count() == 48
    # Both splits occur, so the check saw test and train dialogues alike.
    assert 0 < sum(opener.is_held_out for opener in openers) < 12
