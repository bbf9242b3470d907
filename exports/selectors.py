"""Reads of export runs."""

from django.db.models import QuerySet

from backend.errors import NotFound
from exports.models import ExportRun

EXPORT_NOT_FOUND = "No such export."
EXPORT_NOT_DONE = "No finished export with this id."
LIST_LIMIT = 200


def export_run_list() -> "QuerySet[ExportRun]":
    """The newest export runs."""
    return ExportRun.objects.all()[:LIST_LIMIT]


def export_run_by_id(*, export_id: int, done: bool = False) -> ExportRun:
    """An export run (with `done`: only a finished one, whose files can be read)."""
    runs = ExportRun.objects.filter(pk=export_id)
    run = (runs.filter(status=ExportRun.Status.DONE) if done else runs).first()
    if run is None:
        raise NotFound(EXPORT_NOT_DONE if done else EXPORT_NOT_FOUND)
    return run
