"""Gold comparisons: mixed into queues at the batch's rate, never revealed, outside the overlap, and scored."""

import random
from datetime import timedelta

import pytest
from django.test import override_settings

from backend.batches.models import Annotation, Assignment, GoldReview
from backend.batches.selectors import batch_progress
from backend.batches.services import gold
from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from backend.batches.services.batches import batch_open
from backend.batches.services.comparisons import ResponseInput
from backend.batches.services.gold import gold_comparison_create, gold_review_clear, gold_reviews_refresh
from tests.factories import make_batch, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(monkeypatch):
    monkeypatch.setattr(gold, "_rng", random.Random(7))


def add_gold(batch, count, *, admin=None, better="first"):
    checkpoint = batch.checkpoints.first()
    items = []
    for i in range(count):
        comparison, _ = gold_comparison_create(
            batch=batch,
            prompt_text=f"Which planet is number {i}?",
            first=ResponseInput(checkpoint=checkpoint, text=f"the right answer {i}", temperature=0.7),
            second=ResponseInput(checkpoint=checkpoint, text=f"a wrong answer {i}", temperature=0.7),
            better=better,
            created_by=admin,
        )
        items.append(comparison)
    return items


def judge(batch, annotator, *, pick_first: bool, key: str):
    assignment = assignment_lease_next(batch=batch, annotator=annotator)
    assert assignment is not None
    shown_first = "b" if assignment.swap else "a"
    choice = shown_first if pick_first else ("a" if shown_first == "b" else "b")
    annotation_submit(
        assignment_id=assignment.pk, annotator=annotator, choice=choice, strength="better", idempotency_key=key
    )
    return assignment


def test_gold_is_served_at_the_batch_rate_and_each_item_once(seeded):
    batch = make_batch(comparisons=300)
    batch.gold_rate = 0.2
    batch.save(update_fields=["gold_rate"])
    items = add_gold(batch, 150)
    annotator = make_user()
    leases = [judge(batch, annotator, pick_first=True, key=f"k{i}") for i in range(200)]
    served = [a for a in leases if a.comparison.is_gold]
    # 200 draws at 0.2: 40 expected; the seeded draw must land near it.
    assert 25 <= len(served) <= 55
    assert len({a.comparison_id for a in served}) == len(served), "a gold item was served twice"
    assert {a.comparison_id for a in served} <= {c.pk for c in items}


def test_gold_does_not_count_toward_target_or_overlap(seeded):
    batch = make_batch(comparisons=2, overlap=1)
    batch.gold_rate = 0.5
    batch.save(update_fields=["gold_rate"])
    (item,) = add_gold(batch, 1)
    annotators = [make_user() for _ in range(4)]
    # The regular lease never serves gold: with the rate at 0, two regular leases exhaust the batch.
    batch.gold_rate = 0
    batch.save(update_fields=["gold_rate"])
    judge(batch, annotators[0], pick_first=True, key="a")
    judge(batch, annotators[0], pick_first=True, key="b")
    assert assignment_lease_next(batch=batch, annotator=annotators[0]) is None
    # Gold goes to as many annotators as ask, beyond the overlap of 1, and is not progress.
    batch.gold_rate = 0.5
    batch.save(update_fields=["gold_rate"])
    for i, annotator in enumerate(annotators[1:]):
        lease = None
        for _attempt in range(40):
            lease = assignment_lease_next(batch=batch, annotator=annotator)
            if lease is not None:
                break
        assert lease is not None and lease.comparison_id == item.pk
        annotation_submit(
            assignment_id=lease.pk, annotator=annotator, choice="a", strength="better", idempotency_key=f"g{i}"
        )
    assert Assignment.objects.filter(comparison=item, status="submitted").count() == 3
    progress = batch_progress(batch=batch)
    assert (progress.comparisons, progress.annotations, progress.target_annotations) == (2, 2, 2)


def test_the_annotator_api_and_page_never_reveal_gold(seeded, client_for, client):
    batch = make_batch(comparisons=0, open_it=False)
    batch.gold_rate = 0.5
    batch.save(update_fields=["gold_rate"])
    add_gold(batch, 1)
    batch = batch_open(batch=batch)
    annotator = make_user(username="ann-qc", password="a-long-password")
    api = client_for(annotator)
    body = {}
    for _ in range(40):
        response = api.post(f"/api/v1/batches/{batch.pk}/next/")
        if response.status_code == 200:
            body = response.json()
            break
    assert body, "the gold item was never served"
    text = str(body).lower()
    assert "gold" not in text and "better_response" not in text
    assert set(body) == {
        "id",
        "batch",
        "focus",
        "status",
        "dialogue",
        "prompt",
        "response_a",
        "response_b",
        "leased_at",
        "expires_at",
    }
    client.force_login(annotator)
    page = client.get(f"/work/assignments/{body['id']}/").content.decode().lower()
    assert "gold" not in page
    submitted = api.post(
        f"/api/v1/assignments/{body['id']}/submit/",
        {"choice": "a", "strength": "better", "idempotency_key": "x"},
        format="json",
    ).json()
    assert "gold" not in str(submitted).lower() and "correct" not in str(submitted).lower()


@override_settings(GOLD_FLAG_ACCURACY=0.7, GOLD_FLAG_MIN_ANSWERS=4)
def test_low_gold_accuracy_flags_the_annotator_until_an_admin_clears_it(seeded):
    batch = make_batch(comparisons=0, open_it=False)
    batch.gold_rate = 0.5
    batch.save(update_fields=["gold_rate"])
    add_gold(batch, 10)
    batch = batch_open(batch=batch)
    careless, careful, admin = make_user(), make_user(), make_user()
    for i in range(4):
        for annotator, right in ((careless, i == 0), (careful, True)):
            lease = None
            while lease is None:
                lease = assignment_lease_next(batch=batch, annotator=annotator)
            first_shown = "b" if lease.swap else "a"
            choice = first_shown if right else ("a" if first_shown == "b" else "b")
            annotation_submit(
                assignment_id=lease.pk, annotator=annotator, choice=choice, strength="better", idempotency_key=f"{i}"
            )
    assert gold_reviews_refresh() == {"annotators": 2, "flagged": 1}
    review = GoldReview.objects.get(annotator=careless)
    assert review.flagged and review.accuracy == pytest.approx(0.25)
    assert not GoldReview.objects.get(annotator=careful).flagged
    gold_reviews_refresh()  # idempotent
    assert GoldReview.objects.filter(flagged=True).count() == 1
    gold_review_clear(annotator=careless, cleared_by=admin)
    gold_reviews_refresh()
    cleared = GoldReview.objects.get(annotator=careless)
    assert not cleared.flagged and cleared.answered == 0


def test_the_gold_api_is_for_admins_and_names_the_bad_field(client_for, batch_admin):
    batch = make_batch(comparisons=1)
    checkpoint = batch.checkpoints.first()
    assert checkpoint is not None
    api = client_for(batch_admin)
    body = {
        "prompt": "What is 2 + 2?",
        "first_response": {"checkpoint": checkpoint.pk, "text": "4", "temperature": 0.7},
        "second_response": {"checkpoint": checkpoint.pk, "text": "5", "temperature": 0.7},
        "better": "first",
    }
    created = api.post(f"/api/v1/batches/{batch.pk}/gold/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["better_response"] == created.json()["first_response"]["id"]
    again = api.post(f"/api/v1/batches/{batch.pk}/gold/", body, format="json")
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    conflicting = api.post(f"/api/v1/batches/{batch.pk}/gold/", {**body, "better": "second"}, format="json")
    assert conflicting.status_code == 400 and "better" in conflicting.json()
    bad = api.post(f"/api/v1/batches/{batch.pk}/gold/", {**body, "better": "neither"}, format="json")
    assert bad.status_code == 400 and "better" in bad.json()
    label = api.post(
        f"/api/v1/batches/{batch.pk}/gold/", {**body, "prompt": "x", "safety_label": "both_safe"}, format="json"
    )
    assert label.status_code == 400 and "safety_label" in label.json()
    assert Annotation.objects.count() == 0
    assert batch_progress(batch=batch).comparisons == 1


def test_an_answer_after_an_expired_gold_lease_is_still_taken(seeded):
    batch = make_batch(comparisons=0, open_it=False, overlap=1)
    batch.gold_rate = 0.5
    batch.save(update_fields=["gold_rate"])
    (item,) = add_gold(batch, 1)
    batch = batch_open(batch=batch)
    leases = []
    for annotator in (make_user(), make_user(), make_user()):
        lease = None
        while lease is None:
            lease = assignment_lease_next(batch=batch, annotator=annotator)
        assert lease.comparison_id == item.pk
        leases.append(lease)
    for i, lease in enumerate(leases[:2]):
        annotation_submit(
            assignment_id=lease.pk, annotator=lease.annotator, choice="a", strength="better", idempotency_key=f"on{i}"
        )
    # Two annotators already judged the item, past the batch's overlap of 1; the third submits after expiry.
    late = leases[2]
    annotation, created = annotation_submit(
        assignment_id=late.pk,
        annotator=late.annotator,
        choice="b",
        strength="slightly_better",
        idempotency_key="late",
        now=late.expires_at + timedelta(minutes=5),
    )
    assert created and annotation.comparison_id == item.pk
    assert Assignment.objects.filter(comparison=item, status="submitted").count() == 3
