"""Admin and researcher actions leave an audit event, in the same transaction; staff read the log."""

import io

import pytest
from django.db import transaction
from django.test import Client

from backend.accounts.roles import Role
from backend.audit.models import AuditEvent
from backend.batches.models import Batch
from backend.batches.services.batches import batch_close
from backend.checkpoints.models import Checkpoint
from tests.factories import make_batch, make_checkpoint, make_comparison, make_user

pytestmark = pytest.mark.django_db


def actions_on(obj) -> list[tuple[str, str]]:
    events = AuditEvent.objects.filter(target_type=obj._meta.label_lower, target_id=str(obj.pk)).order_by("id")
    return [(event.action, event.actor_username) for event in events]


def test_a_batch_created_opened_and_closed_over_the_api_leaves_three_events(client_for, batch_admin):
    client = client_for(batch_admin)
    checkpoints = [make_checkpoint(), make_checkpoint()]
    created = client.post(
        "/api/v1/batches/",
        {"name": "week 48", "target_comparisons": 1, "checkpoints": [c.pk for c in checkpoints]},
        format="json",
    )
    assert created.status_code == 201, created.content
    batch = Batch.objects.get(pk=created.json()["id"])
    make_comparison(batch)
    for step in ("open", "open", "close", "close"):  # repeating an open or a close changes nothing
        assert client.post(f"/api/v1/batches/{batch.pk}/{step}/").status_code == 200

    name = batch_admin.username
    assert actions_on(batch) == [("batch.create", name), ("batch.open", name), ("batch.close", name)]
    assert AuditEvent.objects.get(action="batch.open").target_repr == str(batch)


def test_a_refused_action_leaves_no_event(client_for, batch_admin):
    batch = make_batch(comparisons=0, open_it=False)
    assert client_for(batch_admin).post(f"/api/v1/batches/{batch.pk}/open/").status_code == 409
    assert actions_on(batch) == [("batch.create", "")]


def test_the_event_rolls_back_with_its_action(batch_admin):
    batch = make_batch(comparisons=1)
    with pytest.raises(RuntimeError), transaction.atomic():
        batch_close(batch=batch, actor=batch_admin)
        raise RuntimeError("the caller's transaction fails after the close")
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.OPEN
    assert not AuditEvent.objects.filter(action="batch.close").exists()


def test_registering_and_importing_are_recorded_with_their_actor(client_for, researcher, batch_admin):
    registered = client_for(researcher).post("/api/v1/checkpoints/", {"name": "sft-1", "path": "/m/sft-1"})
    assert registered.status_code == 201
    assert actions_on(Checkpoint.objects.get(name="sft-1")) == [("checkpoint.register", researcher.username)]

    upload = io.BytesIO(b'{"text": "How do tides work?"}\n{"text": "Why is the sky blue?"}\n')
    upload.name = "prompts.jsonl"
    imported = client_for(batch_admin).post("/api/v1/prompts/import/", {"file": upload}, format="multipart")
    assert imported.status_code == 201, imported.content
    event = AuditEvent.objects.get(action="prompts.import")
    assert (event.actor, event.details) == (batch_admin, {"created": 2, "skipped": 0})


def test_django_admin_changes_are_mirrored(batch_admin):
    make_user(Role.ADMIN, username="boss", password="a-long-password")
    client = Client()
    assert client.login(username="boss", password="a-long-password")
    checkpoint = make_checkpoint("sft-7")
    page = client.post(
        f"/admin/checkpoints/checkpoint/{checkpoint.pk}/change/",
        {"name": "sft-7", "kind": checkpoint.kind, "path": "/moved/sft-7", "produced_by": "", "notes": "moved"},
    )
    assert page.status_code == 302, page.content[:500]
    event = AuditEvent.objects.get(action="admin.change")
    assert (event.actor_username, event.target_type, event.target_id) == (
        "boss",
        "checkpoints.checkpoint",
        str(checkpoint.pk),
    )
    assert "Path" in event.details["message"]


def test_staff_read_the_log_filtered_and_it_is_read_only_in_the_admin(client_for, researcher, batch_admin):
    make_batch(comparisons=1)
    make_checkpoint("reward-x")
    listed = client_for(researcher).get("/api/v1/audit-events/", {"action": "batch."}).json()
    assert [event["action"] for event in listed["results"]] == ["batch.open", "batch.create"]
    assert listed["count"] == 2
    assert client_for(researcher).get("/api/v1/audit-events/", {"actor": "x"}).status_code == 400

    client = Client()
    client.force_login(batch_admin)
    assert client.get("/admin/audit/auditevent/").status_code == 200
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
