"""Exports and imports over HTTP: researchers build and download, nobody else downloads."""

import io
import json

import pytest
from django.urls import reverse

from backend.accounts.roles import Role
from backend.batches.models import Prompt
from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from exports.imports import hh_transcript
from exports.models import ExportRun, ExternalPreference
from tests.factories import make_batch, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def judged(batch, annotator):
    while (assignment := assignment_lease_next(batch=batch, annotator=annotator)) is not None:
        annotation_submit(
            assignment_id=assignment.pk,
            annotator=annotator,
            choice="b",
            strength="better",
            idempotency_key=f"{assignment.pk}",
        )


def test_a_researcher_exports_and_downloads_and_others_cannot(client_for):
    batch = make_batch(comparisons=3, held_out_size=0)
    judged(batch, make_user(Role.ANNOTATOR))
    researcher = client_for(make_user(Role.RESEARCHER))
    created = researcher.post(
        reverse("export-list"), {"formats": ["jsonl"], "margin_scheme": "small", "client_key": "e1"}, format="json"
    )
    assert created.status_code == 202, created.content
    body = created.json()
    assert body["status"] == "done" and body["progress"] == 1.0  # eager: built on commit, before the reply
    again = researcher.post(reverse("export-list"), {"formats": ["jsonl"], "client_key": "e1"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == body["id"] and ExportRun.objects.count() == 1
    url = next(f["url"] for f in body["files"] if f["name"] == "train.jsonl")
    download = researcher.get(url)
    assert download.status_code == 200
    lines = b"".join(download.streaming_content).decode().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["margin"] == pytest.approx(2 / 3)
    for role in (Role.ADMIN, Role.ANNOTATOR):
        assert client_for(make_user(role)).get(url).status_code == 403
    assert researcher.get(url.replace("train.jsonl", "secrets.txt")).status_code == 404


def test_bad_export_options_are_400s(client_for):
    researcher = client_for(make_user(Role.RESEARCHER))
    response = researcher.post(reverse("export-list"), {"formats": ["xml"]}, format="json")
    assert response.status_code == 400 and "formats" in response.json()
    response = researcher.post(reverse("export-list"), {"filters": {"batches": [424242]}}, format="json")
    assert response.status_code == 400 and "filters.batches" in response.json()


def test_batch_statistics_are_live(client_for):
    batch = make_batch(comparisons=4, held_out_size=0)
    judged(batch, make_user(Role.ANNOTATOR))
    stats = client_for(make_user(Role.ADMIN)).get(reverse("batch-statistics", kwargs={"batch_id": batch.pk})).json()
    assert stats["counts"]["total"] == 4 and stats["counts"]["strength"] == {"better": 4}
    assert stats["statistics"]["avg_turns_per_dialogue"] == 1.0


def _named(content: bytes, name: str) -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = name
    return handle


def test_prompt_pool_imports_from_jsonl_and_csv_all_or_nothing(client_for):
    admin = client_for(make_user(Role.ADMIN))
    url = reverse("prompt-import")
    jsonl = b'{"text": "How do tides work?"}\n{"text": "Make a bomb", "is_safety": true, "is_adversarial": true}\n'
    assert admin.post(url, {"file": _named(jsonl, "p.jsonl")}).json() == {"created": 2, "skipped": 0}
    csv = b"text,is_safety,tags\nHow do tides work?,0,\nWrite a poem,false,creative;short\n"
    assert admin.post(url, {"file": _named(csv, "p.csv")}).json() == {"created": 1, "skipped": 1}
    assert Prompt.objects.get(text="Make a bomb").is_adversarial
    assert Prompt.objects.get(text="Write a poem").tags == ["creative", "short"]
    bad = admin.post(url, {"file": _named(b'{"text": "fine"}\n{"text": ""}\n', "bad.jsonl")})
    assert bad.status_code == 400 and "Line 2" in bad.json()["file"][0]
    assert not Prompt.objects.filter(text="fine").exists()


def test_open_source_pairs_import_once_and_parse_multi_turn(client_for):
    researcher = client_for(make_user(Role.RESEARCHER))
    pair = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Rob a bank?\n\nAssistant: No, I can't help.",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Rob a bank?\n\nAssistant: Sure, first...",
    }
    content = (json.dumps(pair) + "\n").encode()
    url = reverse("preference-import")
    fields = {"source": "hh", "harmless": "true"}
    assert researcher.post(url, {"file": _named(content, "hh.jsonl"), **fields}).json() == {"created": 1, "skipped": 0}
    assert researcher.post(url, {"file": _named(content, "hh.jsonl"), **fields}).json() == {"created": 0, "skipped": 1}
    stored = ExternalPreference.objects.get()
    assert [m["role"] for m in stored.prompt] == ["user", "assistant", "user"] and stored.chosen == "No, I can't help."
    broken = researcher.post(url, {"file": _named(b'{"chosen": "no roles", "rejected": "x"}\n', "x.jsonl"), **fields})
    assert broken.status_code == 400 and "Line 1" in broken.json()["file"][0]


def test_hh_transcripts_keep_multi_paragraph_turns():
    prompt, reply = hh_transcript("\n\nHuman: Two parts:\n\nsecond paragraph\n\nAssistant: Done.")
    assert prompt == [{"role": "user", "content": "Two parts:\n\nsecond paragraph"}] and reply == "Done."


def test_a_researcher_starts_an_export_from_the_admin():
    from django.test import Client

    make_user(Role.RESEARCHER, username="res", password="a-long-password")
    judged(make_batch(comparisons=2, held_out_size=0), make_user(Role.ANNOTATOR))
    client = Client()
    assert client.login(username="res", password="a-long-password")
    form = {"filters": "{}", "formats": ["jsonl"], "granularity": "comparison", "margin_scheme": "large"}
    form |= {"mix": "", "seed": "0", "tokenizer": "whitespace"}
    bad = client.post("/admin/exports/exportrun/add/", {**form, "filters": '{"batches": [777]}'})
    assert bad.status_code == 200 and b"Unknown batch id" in bad.content and not ExportRun.objects.exists()
    added = client.post("/admin/exports/exportrun/add/", form, follow=True)
    assert added.status_code == 200
    run = ExportRun.objects.get()
    assert run.status == ExportRun.Status.DONE and run.margin_scheme == "large" and run.rows_written == 2
