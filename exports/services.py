"""Creating and building export runs: the datasets, their manifests, and a batch's live figures."""

import json
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from backend.audit.services import audit_record
from backend.batches.models import Batch, Focus
from backend.errors import InvalidInput
from backend.idempotency import create_once
from exports.collector import collector_tuned
from exports.models import ExportRun
from exports.rows import (
    EXTERNAL_MARGIN,
    ConsensusStats,
    CountedRow,
    RowFilters,
    annotation_count,
    external_rows,
    platform_rows,
)
from exports.stats import WHITESPACE, DatasetStatistics, token_counter
from exports.writers import FORMATS, SplitWriter
from preference_format import MARGIN_SCHEME_NAMES, MARGIN_SCHEMES, SCHEMA_VERSION, Split, one_of

FORMATS_INVALID = "formats must be a non-empty list of: jsonl, parquet."
GRANULARITY_INVALID = "granularity must be 'comparison' (consensus) or 'annotation' (every annotation)."
MARGIN_INVALID = f"margin_scheme must be {one_of(MARGIN_SCHEME_NAMES)}."
MIX_INVALID = "mix must be empty, 'helpfulness' or 'safety'."
TEST_MIX_INVALID = "test_mix must be true or false."
FOCUS_INVALID = "focus must be empty, 'helpfulness' or 'safety'."
BATCHES_UNKNOWN = "Unknown batch id(s): {ids}."
DATE_INVALID = "Give an ISO 8601 date-time, e.g. 2026-11-23T00:00:00Z."
FILTERS_INVALID = "filters must be an object with: batches, focus, since, until, drop_unsure, include_gold."
TOKENIZER_MISSING = "No tokenizer at {path}: give 'whitespace' or the directory of a Hugging Face tokenizer."
PROGRESS_EVERY = 1000
# Progress is looked at every PROGRESS_EVERY rows and saved (an UPDATE and its commit) at most this often: saved at
# every look, a large export would spend its time committing.
PROGRESS_INTERVAL_S = 1.0
# Gold comparisons (quality control) stay out of datasets unless include_gold asks for them.
_FILTER_KEYS = {"batches", "focus", "since", "until", "drop_unsure", "include_gold"}


def _parse_filters(filters: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(filters, dict) or set(filters) - _FILTER_KEYS:
        raise InvalidInput(FILTERS_INVALID, field="filters")
    batches = filters.get("batches") or []
    if not isinstance(batches, list) or not all(isinstance(b, int) and not isinstance(b, bool) for b in batches):
        raise InvalidInput(BATCHES_UNKNOWN.format(ids=batches), field="filters.batches")
    missing = set(batches) - set(Batch.objects.filter(pk__in=batches).values_list("id", flat=True))
    if missing:
        raise InvalidInput(BATCHES_UNKNOWN.format(ids=", ".join(map(str, sorted(missing)))), field="filters.batches")
    focus = filters.get("focus") or ""
    if focus not in ("", *Focus.values):
        raise InvalidInput(FOCUS_INVALID, field="filters.focus")
    checked: dict[str, Any] = {
        "batches": sorted(batches),
        "focus": focus,
        "drop_unsure": bool(filters.get("drop_unsure")),
        "include_gold": bool(filters.get("include_gold")),
    }
    for key in ("since", "until"):
        value = filters.get(key)
        if value:
            moment = parse_datetime(value) if isinstance(value, str) else None
            if moment is None:
                raise InvalidInput(DATE_INVALID, field=f"filters.{key}")
            checked[key] = moment.isoformat()
    return checked


def export_options_check(
    *,
    filters: dict[str, Any] | None = None,
    formats: Iterable[str] = FORMATS,
    granularity: str = ExportRun.Granularity.COMPARISON,
    margin_scheme: str = "none",
    mix: str = "",
    test_mix: bool = False,
    tokenizer: str = WHITESPACE,
) -> dict[str, Any]:
    """Validate an export's options; returns them normalised (the tokenizer is kept with the filters)."""
    formats = list(dict.fromkeys(formats))
    if not formats or set(formats) - set(FORMATS):
        raise InvalidInput(FORMATS_INVALID, field="formats")
    if granularity not in ExportRun.Granularity.values:
        raise InvalidInput(GRANULARITY_INVALID, field="granularity")
    if margin_scheme not in MARGIN_SCHEMES:
        raise InvalidInput(MARGIN_INVALID, field="margin_scheme")
    if mix not in ExportRun.Mix.values:
        raise InvalidInput(MIX_INVALID, field="mix")
    if not isinstance(test_mix, bool):
        raise InvalidInput(TEST_MIX_INVALID, field="test_mix")
    if tokenizer != WHITESPACE and not _tokenizer_dir_exists(tokenizer):
        raise InvalidInput(TOKENIZER_MISSING.format(path=tokenizer), field="tokenizer")
    checked = _parse_filters(filters or {})
    checked["tokenizer"] = tokenizer
    return {
        "filters": checked,
        "formats": formats,
        "granularity": granularity,
        "margin_scheme": margin_scheme,
        "mix": mix,
        "test_mix": test_mix,
    }


def _tokenizer_dir_exists(path: str) -> bool:
    """Whether a Hugging Face tokenizer lives there; a name the file system refuses (too long, NUL) is not one."""
    try:
        return (Path(path) / "tokenizer_config.json").exists()
    except (OSError, ValueError):
        return False


def export_create(
    *,
    created_by: User | None,
    enqueue: Callable[[int], None],
    seed: int = 0,
    client_key: str = "",
    **options: Any,
) -> tuple[ExportRun, bool]:
    """Validate and queue an export run; returns (run, created). A retried create with the same key returns it.

    `options` are those of `export_options_check`.
    """

    def create() -> ExportRun:
        checked = export_options_check(**options)
        run = ExportRun.objects.create(created_by=created_by, client_key=client_key, seed=seed, **checked)
        run.batches.set(checked["filters"]["batches"])  # the named ones; the build sets those it read
        audit_record(actor=created_by, action="export.create", target=run)
        transaction.on_commit(partial(enqueue, run.pk))
        return run

    return create_once(ExportRun.objects, owner=created_by, client_key=client_key, create=create)


def _row_filters(filters: dict[str, Any], focus: str | None = None) -> RowFilters:
    since, until = filters.get("since"), filters.get("until")
    return RowFilters(
        batch_ids=tuple(filters.get("batches", ())),
        focus=filters.get("focus", "") if focus is None else focus,
        since=datetime.fromisoformat(since) if since else None,
        until=datetime.fromisoformat(until) if until else None,
        drop_unsure=bool(filters.get("drop_unsure")),
        include_gold=bool(filters.get("include_gold")),
    )


Source = Callable[[], Iterator[CountedRow]]


def _sample(sources: list[Source], count: int, rng: random.Random) -> Iterator[CountedRow]:
    """Exactly `count` rows (or all, if fewer) drawn without replacement from the sources, in stream order."""
    total = sum(sum(1 for _ in source()) for source in sources)
    keep = set(rng.sample(range(total), min(count, total)))
    index = 0
    for source in sources:
        for counted in source():
            if index in keep:
                yield counted
            index += 1


def _plan(run: ExportRun, stats: ConsensusStats) -> tuple[list[Source], dict[str, Any]]:
    """The row sources of a run, in output order, and the mix description for the manifest."""
    margin, granularity = run.margin_scheme, run.granularity

    def platform(focus: str | None) -> Source:
        return partial(
            platform_rows, _row_filters(run.filters, focus), granularity=granularity, margin_scheme=margin, stats=stats
        )

    def sampled_into_mix(source: Source) -> Source:
        """Rows of the other focus (and open-source rows) that a mix samples: their test rows would put a
        second task into the mix's test figures, so they come from train only unless `test_mix` asks."""
        if run.test_mix:
            return source
        return lambda: (counted for counted in source() if counted[0]["split"] == Split.TRAIN)

    if not run.mix:
        return [platform(None)], {}
    rng = random.Random(run.seed)
    if run.mix == ExportRun.Mix.HELPFULNESS:
        # All helpfulness comparisons plus an equal amount sampled from safety and open-source data.
        core = platform(Focus.HELPFULNESS)
        size = sum(1 for _ in core())
        pool: list[Source] = [
            sampled_into_mix(platform(Focus.SAFETY)),
            partial(external_rows, harmless=None, margin_scheme=margin),
        ]
        sampled = list(_sample(pool, size, rng))
        description = {"kind": "helpfulness", "helpfulness": size, "sampled_from_safety_and_open_source": len(sampled)}
    else:
        # All safety comparisons plus open-source harmless data, mixed 90/10 with helpfulness data.
        safety_sources: list[Source] = [
            platform(Focus.SAFETY),
            partial(external_rows, harmless=True, margin_scheme=margin),
        ]
        size = sum(sum(1 for _ in source()) for source in safety_sources)
        sampled = list(_sample([sampled_into_mix(platform(Focus.HELPFULNESS))], round(size / 9), rng))
        core = None
        description = {"kind": "safety", "safety_and_harmless": size, "sampled_helpfulness": len(sampled)}
    description["seed"] = run.seed
    own = "helpfulness" if run.mix == ExportRun.Mix.HELPFULNESS else "safety"
    description["test_file"] = (
        f"the {own} test rows and the test rows of the data sampled into the mix (test_mix)"
        if run.test_mix
        else f"the {own} test rows only: the data sampled into the mix comes from train"
    )
    sources: list[Source] = [core] if core else safety_sources
    return [*sources, lambda: iter(sampled)], description


def _code_version() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _set_progress(run: ExportRun, written: int, on_progress: Callable[[int, int], None] | None) -> None:
    ExportRun.objects.filter(pk=run.pk).update(rows_written=written)
    if on_progress is not None:
        on_progress(written, run.rows_expected)


def export_build(*, run_id: int, on_progress: Callable[[int, int], None] | None = None) -> ExportRun:
    """Stream the run's rows into files and a manifest. Files appear only when complete; a rerun of a
    done run changes nothing, and a failed build leaves no files behind.
    """
    run = ExportRun.objects.get(pk=run_id)
    if run.status == ExportRun.Status.DONE:
        return run
    expected = (
        annotation_count(_row_filters(run.filters)) if not run.mix else annotation_count(_row_filters(run.filters, ""))
    )
    ExportRun.objects.filter(pk=run.pk).update(
        status=ExportRun.Status.RUNNING, started_at=timezone.now(), rows_expected=expected, error=""
    )
    run.rows_expected = expected
    final = Path(settings.EXPORTS_ROOT) / f"export-{run.pk:06d}"
    partial_dir = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial_dir, ignore_errors=True)
    try:
        consensus = ConsensusStats()
        name, count_tokens = token_counter(run.filters.get("tokenizer", WHITESPACE))
        statistics = DatasetStatistics(count_tokens=count_tokens, tokenizer=name)
        sources, mix = _plan(run, consensus)
        written = 0
        next_progress = 0.0
        with collector_tuned(), SplitWriter(partial_dir, run.formats, run.margin_scheme) as writer:
            for source in sources:
                for row, words in source():
                    writer.write(row)
                    statistics.add(row, words)
                    written += 1
                    if written % PROGRESS_EVERY == 0 and time.monotonic() >= next_progress:
                        _set_progress(run, written, on_progress)
                        next_progress = time.monotonic() + PROGRESS_INTERVAL_S
        manifest = _manifest(run, writer.files(), statistics, consensus, mix)
        (partial_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        partial_dir.rename(final)
    except Exception as error:
        shutil.rmtree(partial_dir, ignore_errors=True)
        ExportRun.objects.filter(pk=run.pk).update(
            status=ExportRun.Status.FAILED, error=f"{type(error).__name__}: {error}", finished_at=timezone.now()
        )
        raise
    _set_progress(run, written, on_progress)
    with transaction.atomic():  # a done export always links the batches its manifest names (the lineage reads them)
        ExportRun.objects.filter(pk=run.pk).update(
            status=ExportRun.Status.DONE,
            directory=str(final),
            manifest=manifest,
            rows_expected=max(expected, written),
            finished_at=timezone.now(),
        )
        run.batches.set([source["id"] for source in manifest["source_batches"]])
    run.refresh_from_db()
    return run


def _margins(scheme: str) -> dict[str, Any] | None:
    """The margin m(r) of each strength under the scheme, and of imported pairs (which have none)."""
    table = MARGIN_SCHEMES[scheme]
    if table is None:
        return None
    return {"by_strength": {str(strength): value for strength, value in table.items()}, "no_strength": EXTERNAL_MARGIN}


def _manifest(
    run: ExportRun,
    files: list[dict[str, Any]],
    statistics: DatasetStatistics,
    consensus: ConsensusStats,
    mix: dict[str, Any],
) -> dict[str, Any]:
    # The batches that rows came from: not those the filters named, nor every batch when they named none.
    batches = Batch.objects.filter(name__in=statistics.batches - {""})
    figures = statistics.as_dict()
    return {
        "schema_version": SCHEMA_VERSION,
        "export_id": run.pk,
        "created_at": run.created_at.isoformat(),
        "filters": run.filters,
        "granularity": run.granularity,
        "margin_scheme": run.margin_scheme,
        "margins": _margins(run.margin_scheme),
        "mix": mix,
        "source_batches": [
            {"id": b.pk, "name": b.name, "week": b.iso_week, "focus": b.focus}
            for b in batches.distinct().order_by("id")
        ],
        "counts": figures["counts"],
        "consensus": {
            "comparisons_seen": consensus.comparisons_seen,
            "ties_dropped": consensus.ties_dropped,
            "unsure_dropped": consensus.unsure_dropped,
        },
        "statistics": figures["table6"],
        "files": files,
        "code_version": _code_version(),
    }


def batch_statistics(*, batch: Batch) -> dict[str, Any]:
    """The manifest's figures for one batch, computed live (consensus rows, whitespace tokens)."""
    statistics = DatasetStatistics(count_tokens=token_counter(WHITESPACE)[1], tokenizer=WHITESPACE)
    consensus = ConsensusStats()
    for row, words in platform_rows(
        RowFilters(batch_ids=(batch.pk,)), granularity="comparison", margin_scheme="none", stats=consensus
    ):
        statistics.add(row, words)
    figures = statistics.as_dict()
    return {
        "counts": figures["counts"],
        "statistics": figures["table6"],
        "consensus": {"comparisons_seen": consensus.comparisons_seen, "ties_dropped": consensus.ties_dropped},
    }
