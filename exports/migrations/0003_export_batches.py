"""ExportRun.batches: the batches an export reads, as a database link (the lineage page follows it).

The data step fills it for the exports made before it: a built export links the source batches its manifest names
(what export_build now stores), any other the batches its filters name (what export_create now stores). Ids of
batches deleted since are left out.
"""

from django.db import migrations, models


def _named_batch_ids(run) -> list[int]:
    sources = (run.manifest or {}).get("source_batches")
    if isinstance(sources, list):
        return [s["id"] for s in sources if isinstance(s, dict) and isinstance(s.get("id"), int)]
    named = (run.filters or {}).get("batches") or []
    return [i for i in named if isinstance(i, int) and not isinstance(i, bool)] if isinstance(named, list) else []


def fill_export_batches(apps, schema_editor):
    ExportRun = apps.get_model("exports", "ExportRun")
    Batch = apps.get_model("batches", "Batch")
    for run in ExportRun.objects.only("id", "manifest", "filters").iterator():
        ids = _named_batch_ids(run)
        if ids:
            run.batches.set(list(Batch.objects.filter(pk__in=ids).values_list("pk", flat=True)))


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0004_split_at_creation"),
        ("exports", "0002_export_test_mix"),
    ]

    operations = [
        migrations.AddField(
            model_name="exportrun",
            name="batches",
            field=models.ManyToManyField(
                blank=True,
                help_text="The batches it reads: those its filters name when it is created, its manifest's source "
                "batches once it is built.",
                related_name="exports",
                to="batches.batch",
            ),
        ),
        migrations.RunPython(fill_export_batches, migrations.RunPython.noop),
    ]
