"""The dashboards' figures, computed from annotations; the HTML pages and their JSON twins read the same dicts."""

from collections import Counter, defaultdict
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from backend.accounts.roles import Role
from backend.batches.models import Annotation, Assignment, Batch, Comparison, Focus, GoldReview
from backend.batches.selectors import batch_live_pairs, batch_progress
from backend.batches.services.gold import gold_judgements
from backend.checkpoints.models import Checkpoint, CheckpointKind, TrainingRun
from backend.errors import NotFound
from insights.models import ResponseScore
from insights.statistics import (
    binomial_two_sided_p,
    histogram,
    krippendorff_alpha_interval,
    median,
    pairwise_agreement,
    wilson_interval,
)
from loop.models import Iteration
from loop.selectors import (
    RUN_PLOTS,
    human_win_rate,
    human_win_rate_by_temperature,
    iteration_plots,
    iteration_progress,
    leaderboard,
    leaderboard_by_temperature,
)
from loop.services.training_runs import training_run_output_dir
from preference_format import PAPER_SAFETY_LABEL_SHARES, SAFETY_LABELS, STRENGTHS, Strength

BATCH_NOT_FOUND = "No such batch."
ANNOTATOR_NOT_FOUND = "No such annotator."
# Strength on an interval scale, signed by the side chosen (+ first response, - second). The half-steps keep
# "negligibly better" on either side one step apart, as every other pair of neighbouring levels is.
SIGNED_STRENGTH: dict[str, float] = {
    Strength.SIGNIFICANTLY_BETTER: 3.5,
    Strength.BETTER: 2.5,
    Strength.SLIGHTLY_BETTER: 1.5,
    Strength.NEGLIGIBLY_BETTER_OR_UNSURE: 0.5,
}
# Time-on-task histogram bins, in seconds.
TIME_EDGES_S = [0, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600]
REWARD_KIND_FOR_FOCUS = {
    Focus.HELPFULNESS.value: CheckpointKind.REWARD_HELPFULNESS,
    Focus.SAFETY.value: CheckpointKind.REWARD_SAFETY,
}


def _judgements(**filters: Any) -> Any:
    return Annotation.objects.filter(skip_reason="", **filters)


def _time_on_task(times_ms: list[int]) -> dict[str, Any]:
    seconds = [t / 1000 for t in times_ms]
    return {
        "median_s": median(seconds),
        "edges_s": TIME_EDGES_S,
        "counts": histogram(seconds, TIME_EDGES_S),
    }


def _proportion(successes: int, trials: int) -> dict[str, Any]:
    low, high = wilson_interval(successes, trials)
    return {
        "successes": successes,
        "trials": trials,
        "rate": successes / trials if trials else None,
        "low": low,
        "high": high,
    }


def _agreement(rows: list[tuple[int, int, int, str]]) -> dict[str, Any]:
    """Agreement over comparisons judged by two or more annotators.

    `rows` are (comparison id, first response id, chosen response id, strength).
    """
    choices: dict[int, list[int]] = defaultdict(list)
    signed: dict[int, list[float]] = defaultdict(list)
    for comparison_id, first_id, chosen_id, strength in rows:
        choices[comparison_id].append(chosen_id)
        sign = 1.0 if chosen_id == first_id else -1.0
        signed[comparison_id].append(sign * SIGNED_STRENGTH[strength])
    overlapped = [cid for cid, chosen in choices.items() if len(chosen) >= 2]
    agree, pairs = pairwise_agreement([choices[cid] for cid in overlapped])
    return {
        "comparisons": len(overlapped),
        "pairs": pairs,
        "choice_agreement": agree / pairs if pairs else None,
        "alpha_signed_strength": krippendorff_alpha_interval([signed[cid] for cid in overlapped]),
    }


def _hourly(moments: list[tuple[datetime, int]]) -> list[dict[str, Any]]:
    """Counts per hour from (hour, count) rows, with the empty hours between them filled in."""
    if not moments:
        return []
    counts = dict(moments)
    hour, last = min(counts), max(counts)
    series = []
    while hour <= last:
        series.append({"hour": hour.isoformat(), "count": counts.get(hour, 0)})
        hour += timedelta(hours=1)
    return series


def batch_dashboard(*, batch_id: int, now: datetime | None = None) -> dict[str, Any]:
    """Every figure of the batch page."""
    now = now or timezone.now()
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        raise NotFound(BATCH_NOT_FOUND)
    progress = batch_progress(batch=batch, now=now)
    regular = _judgements(comparison__batch=batch, comparison__is_gold=False)
    per_hour = (
        regular.annotate(hour=TruncHour("created_at")).values("hour").annotate(n=Count("id")).values_list("hour", "n")
    )
    strengths = Counter(regular.values_list("strength", flat=True))
    labels = Counter(regular.exclude(safety_label="").values_list("safety_label", flat=True))
    labelled = sum(labels.values())
    leases = Assignment.objects.filter(comparison__batch=batch, status=Assignment.Status.LEASED).aggregate(
        open=Count("id", filter=Q(expires_at__gt=now)), expired=Count("id", filter=Q(expires_at__lte=now))
    )
    gold = [j for j in gold_judgements(batch_id=batch.pk)]
    rows = list(regular.values_list("comparison_id", "comparison__first_response_id", "chosen_response_id", "strength"))
    return {
        "batch": {
            "id": batch.pk,
            "name": batch.name,
            "focus": batch.focus,
            "status": batch.status,
            "overlap": batch.overlap,
            "annotators_write_prompts": batch.annotators_write_prompts,
        },
        "live_pairs": batch_live_pairs(batch=batch),
        "progress": {
            "annotations": progress.annotations,
            "target_annotations": progress.target_annotations,
            "fraction_done": progress.fraction_done,
            "comparisons": progress.comparisons,
            "complete": progress.complete,
            "skips": progress.skips,
        },
        "throughput_per_hour": _hourly(list(per_hour)),
        "time_on_task": _time_on_task(list(regular.values_list("time_spent_ms", flat=True))),
        "strengths": [{"strength": s, "count": strengths.get(s, 0)} for s in STRENGTHS],
        "safety_labels": [
            {
                "label": label,
                "count": labels.get(label, 0),
                "share": labels.get(label, 0) / labelled if labelled else None,
                "paper_share": PAPER_SAFETY_LABEL_SHARES[label],
            }
            for label in SAFETY_LABELS
        ],
        "agreement": _agreement(rows),
        "leases": {"open": leases["open"], "expired": leases["expired"]},
        "gold": {
            "comparisons": Comparison.objects.filter(batch=batch, is_gold=True).count(),
            "accuracy": _proportion(sum(j.correct for j in gold), len(gold)),
        },
    }


def batch_overview() -> list[dict[str, Any]]:
    """Batches newest first, with their progress, for the dashboards' index."""
    batches = list(Batch.objects.order_by("-created_at", "-id")[:50])
    overview = []
    for batch in batches:
        progress = batch_progress(batch=batch)
        overview.append(
            {
                "id": batch.pk,
                "name": batch.name,
                "focus": batch.focus,
                "status": batch.status,
                "fraction_done": progress.fraction_done,
                "annotations": progress.annotations,
            }
        )
    return overview


def _peer_agreement(annotator_id: int) -> dict[str, Any]:
    """How often the annotator chose the same response as each other annotator on a comparison both judged."""
    mine = dict(_judgements(annotator_id=annotator_id).values_list("comparison_id", "chosen_response_id"))
    others = _judgements(comparison_id__in=list(mine)).exclude(annotator_id=annotator_id)
    agree = pairs = 0
    for comparison_id, chosen in others.values_list("comparison_id", "chosen_response_id"):
        pairs += 1
        agree += chosen == mine[comparison_id]
    return {"pairs": pairs, "rate": agree / pairs if pairs else None}


def newest_reward_checkpoints() -> dict[str, Checkpoint]:
    """The newest reward checkpoint of each focus (helpfulness, safety), where one exists."""
    newest = {}
    for focus, kind in REWARD_KIND_FOR_FOCUS.items():
        checkpoint = Checkpoint.objects.filter(kind=kind).order_by("-created_at", "-id").first()
        if checkpoint is not None:
            newest[focus] = checkpoint
    return newest


def _drift(annotator_id: int) -> list[dict[str, Any]]:
    """Per focus: the share of the annotator's judgements where the newest reward model prefers the same side,
    per day (per week past three weeks), from stored scores; and how many judgements have both sides scored.
    """
    series = []
    for focus, checkpoint in newest_reward_checkpoints().items():
        rows = list(
            _judgements(
                annotator_id=annotator_id, comparison__batch__focus=focus, comparison__is_gold=False
            ).values_list("created_at", "chosen_response_id", "rejected_response_id")
        )
        response_ids = {r for _, chosen, rejected in rows for r in (chosen, rejected)}
        scores = dict(
            ResponseScore.objects.filter(checkpoint=checkpoint, response_id__in=response_ids).values_list(
                "response_id", "score"
            )
        )
        scored = [(moment, scores[c] > scores[r]) for moment, c, r in rows if c in scores and r in scores]
        span = (max(m for m, _ in scored) - min(m for m, _ in scored)) if scored else timedelta(0)
        weekly = span > timedelta(days=21)
        buckets: dict[str, list[bool]] = defaultdict(list)
        for moment, agrees in scored:
            day = timezone.localtime(moment).date()
            key = f"{day.isocalendar()[0]}-W{day.isocalendar()[1]:02d}" if weekly else day.isoformat()
            buckets[key].append(agrees)
        series.append(
            {
                "focus": focus,
                "checkpoint": {"id": checkpoint.pk, "name": checkpoint.name},
                "judgements": len(rows),
                "scored": len(scored),
                "period": "week" if weekly else "day",
                "points": [
                    {"period": key, **_proportion(sum(values), len(values))} for key, values in sorted(buckets.items())
                ],
            }
        )
    return series


def _annotators() -> Any:
    return User.objects.filter(groups__name=Role.ANNOTATOR.value)


def annotator_overview() -> list[dict[str, Any]]:
    """Every annotator's volume, time, position bias and gold standing, in one row each."""
    judged = (
        _judgements(annotator__groups__name=Role.ANNOTATOR.value)
        .values("annotator_id")
        .annotate(n=Count("id"), left=Count("id", filter=Q(choice="a")))
    )
    counts = {row["annotator_id"]: row for row in judged}
    reviews = {review.annotator_id: review for review in GoldReview.objects.all()}
    gold = defaultdict(list)
    for judgement in gold_judgements():
        gold[judgement.annotator_id].append(judgement.correct)
    rows = []
    for user in _annotators().order_by("username"):
        n = counts.get(user.pk, {}).get("n", 0)
        left = counts.get(user.pk, {}).get("left", 0)
        review = reviews.get(user.pk)
        rows.append(
            {
                "id": user.pk,
                "username": user.username,
                "judgements": n,
                "left_rate": left / n if n else None,
                "position_p_value": binomial_two_sided_p(left, n),
                "gold": _proportion(sum(gold[user.pk]), len(gold[user.pk])),
                "flagged": bool(review and review.flagged),
            }
        )
    return rows


def annotator_dashboard(*, annotator_id: int) -> dict[str, Any]:
    """Every figure of one annotator's page."""
    user = _annotators().filter(pk=annotator_id).first()
    if user is None:
        raise NotFound(ANNOTATOR_NOT_FOUND)
    judged = _judgements(annotator=user)
    n = judged.count()
    left = judged.filter(choice="a").count()
    per_day = Counter(
        timezone.localtime(moment).date().isoformat() for moment in judged.values_list("created_at", flat=True)
    )
    gold = [j.correct for j in gold_judgements(annotator_ids=[user.pk])]
    review = GoldReview.objects.filter(annotator=user).first()
    return {
        "annotator": {"id": user.pk, "username": user.username},
        "volume": {
            "judgements": n,
            "skips": Annotation.objects.filter(annotator=user).exclude(skip_reason="").count(),
            "per_day": [{"day": day, "count": count} for day, count in sorted(per_day.items())],
        },
        "time_on_task": _time_on_task(list(judged.values_list("time_spent_ms", flat=True))),
        "position_bias": {**_proportion(left, n), "p_value": binomial_two_sided_p(left, n), "expected": 0.5},
        "gold": {
            **_proportion(sum(gold), len(gold)),
            "flagged": bool(review and review.flagged),
            "flagged_at": review.flagged_at.isoformat() if review and review.flagged_at else None,
        },
        "peer_agreement": _peer_agreement(user.pk),
        "reward_model_agreement": _drift(user.pk),
    }


def _new_vs_previous(batch: Batch) -> dict[str, Any] | None:
    """How often the batch's newest policy checkpoint beat the previous one in human judgements, pooled and in
    each temperature stratum."""
    recent = list(batch.checkpoints.filter(kind=CheckpointKind.POLICY).order_by("-created_at", "-id")[:2])
    if len(recent) < 2:
        return None
    newest, previous = recent
    pooled = human_win_rate(new=newest, previous=previous, batch=batch)
    strata = human_win_rate_by_temperature(new=newest, previous=previous, batch=batch)
    return {
        "batch": batch.name,
        "new": newest.name,
        "previous": previous.name,
        **_proportion(pooled.wins, pooled.games),
        "by_temperature": [
            {"stratum": stratum, **_proportion(rate.wins, rate.games)} for stratum, rate in strata.items()
        ],
    }


def _training_curve(run: TrainingRun) -> list[dict[str, float]]:
    """(step, train/loss) points from the run's metrics.json, when its output directory has one."""
    path = Path(training_run_output_dir(run)) / "metrics.json"
    if not path.exists():
        return []
    import json

    log = json.loads(path.read_text()).get("log", [])
    return [
        {"step": entry["step"], "loss": entry["train/loss"]}
        for entry in log
        if "step" in entry and "train/loss" in entry
    ]


def models_dashboard() -> dict[str, Any]:
    """The human Bradley-Terry leaderboard, per-batch new-vs-previous win rates, the newest iterations of the loop
    (progress and plots), and the training runs."""
    ratings = leaderboard()
    batches = (
        Batch.objects.annotate(checkpoint_count=Count("checkpoints"))
        .filter(checkpoint_count__gte=2)
        .order_by("-created_at", "-id")[:20]
    )
    runs = TrainingRun.objects.select_related("output_checkpoint").order_by("-created_at", "-id")[:20]
    iterations = Iteration.objects.select_related(
        "base_policy", "new_policy", *(f"{field}__output_checkpoint" for field in RUN_PLOTS)
    ).order_by("-created_at", "-id")[:10]
    return {
        "iterations": [
            {
                "id": iteration.pk,
                "status": iteration.status,
                "step": iteration.step,
                "progress": iteration_progress(iteration=iteration),
                "methods": iteration.methods,
                "base_policy": iteration.base_policy.name,
                "new_policy": iteration.new_policy.name if iteration.new_policy else None,
                "error": iteration.error,
                "plots": sorted(iteration_plots(iteration=iteration)),
            }
            for iteration in iterations
        ],
        "leaderboard": [
            {"name": r.name, "score": r.score, "low": r.low, "high": r.high, "wins": r.wins, "games": r.games}
            for r in ratings
        ],
        "leaderboard_by_temperature": [
            {"stratum": stratum, "ratings": [asdict(rating) for rating in ratings]}
            for stratum, ratings in leaderboard_by_temperature().items()
        ],
        "new_vs_previous": [row for row in (_new_vs_previous(b) for b in batches) if row is not None],
        "training_runs": [
            {
                "id": run.pk,
                "kind": run.kind,
                "status": run.status,
                "step": run.step,
                "total_steps": run.total_steps,
                "metrics": run.metrics,
                "checkpoint": run.output_checkpoint.name if run.output_checkpoint else None,
                "curve": _training_curve(run),
            }
            for run in runs
        ],
    }
