"""ExportRun.batches: the database link from an export to the batches it reads, set when it is created and when
it is built, and filled for older exports by the migration that added it."""

import importlib

import pytest
from django.apps import apps

from backend.accounts.roles import Role
from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from exports.models import ExportRun
from exports.services import export_build, export_create
from tests.factories import make_batch, make_user

pytestmark = pytest.mark.django_db


def judged(comparisons: int = 2):
    batch = make_batch(comparisons=comparisons)
    annotator = make_user(Role.ANNOTATOR)
    for i in range(comparisons):
        lease = assignment_lease_next(batch=batch, annotator=annotator)
        assert lease is not None
        annotation_submit(
            assignment_id=lease.pk, annotator=annotator, choice="a", strength="better", idempotency_key=f"b{i}"
        )
    return batch


def create(**options) -> ExportRun:
    run, _ = export_create(created_by=None, enqueue=lambda _: None, formats=["jsonl"], **options)
    return run


def test_an_export_links_the_batches_it_names_from_its_creation():
    first, second, _other = judged(), judged(), judged()
    run = create(filters={"batches": [second.pk, first.pk]})
    assert set(run.batches.all()) == {first, second}
    built = export_build(run_id=run.pk)
    assert set(built.batches.all()) == {first, second}
    assert set(first.exports.all()) == {built}


def test_an_unfiltered_export_links_the_source_batches_of_its_manifest():
    batches = {judged(), judged()}
    run = create()
    assert not run.batches.exists()
    built = export_build(run_id=run.pk)
    assert {b["id"] for b in built.manifest["source_batches"]} == {b.pk for b in batches}
    assert set(built.batches.all()) == batches


def test_the_migration_fills_the_link_from_the_manifest_or_else_the_filters():
    kept, gone = judged(), judged()
    missing = gone.pk
    gone.delete()
    built = ExportRun.objects.create(
        formats=["jsonl"],
        status=ExportRun.Status.DONE,
        filters={"batches": []},
        manifest={"source_batches": [{"id": kept.pk, "name": kept.name}, {"id": missing, "name": "deleted"}]},
    )
    queued = ExportRun.objects.create(formats=["jsonl"], filters={"batches": [kept.pk, missing]})
    unnamed = ExportRun.objects.create(formats=["jsonl"], filters={})
    migration = importlib.import_module("exports.migrations.0003_export_batches")
    migration.fill_export_batches(apps, None)
    assert list(built.batches.all()) == [kept]
    assert list(queued.batches.all()) == [kept]
    assert not unnamed.batches.exists()


def test_an_export_links_only_the_batches_it_read_rows_from():
    helpfulness = judged()
    safety = make_batch(comparisons=1, focus="safety")
    annotator = make_user(Role.ANNOTATOR)
    lease = assignment_lease_next(batch=safety, annotator=annotator)
    assert lease is not None
    annotation_submit(
        assignment_id=lease.pk,
        annotator=annotator,
        choice="a",
        strength="better",
        safety_label="both_safe",
        idempotency_key="s",
    )
    built = export_build(run_id=create(filters={"focus": "helpfulness"}).pk)
    # The focus filter left the safety batch out: neither the manifest nor the link name it.
    assert [source["id"] for source in built.manifest["source_batches"]] == [helpfulness.pk]
    assert list(built.batches.all()) == [helpfulness]
