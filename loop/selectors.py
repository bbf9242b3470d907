"""Reads for the loop: iteration progress, plots and report, and the human leaderboard of policy checkpoints."""

from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.db.models import F, Q, QuerySet

from backend.batches.models import Annotation, Batch
from backend.checkpoints.models import Checkpoint, CheckpointKind, TrainingRun
from backend.checkpoints.selectors import checkpoint_local_path
from backend.errors import NotFound
from loop.bradley_terry import Rating, bradley_terry
from loop.models import BatchTemplate, Iteration, TemperatureScan
from loop.win_rate import WinRate, wilson

PLOT_NOT_FOUND = "No such plot for this iteration (yet)."
SCAN_NOT_FOUND = "No such temperature scan."
TEMPLATE_NOT_FOUND = "No such batch template."
SCAN_PLOT_NOT_FOUND = "This temperature scan has no plot (yet)."
SCAN_PLOT = "temperature_scan.png"
"""The curve a scan draws, in its output directory (training.temperature_scan.PLOT_FILE)."""
ITERATION_NOT_FOUND = "No such iteration."
LIST_LIMIT = 100
# Share of an iteration's work in each step, for its progress figure (renormalised without the scan when it takes none).
STEP_WEIGHTS = {
    Iteration.Step.EXPORT: 0.05,
    Iteration.Step.REWARD_MODELS: 0.35,
    Iteration.Step.TEMPERATURE_SCAN: 0.1,
    Iteration.Step.POLICY: 0.5,
    Iteration.Step.EVALUATE: 0.1,
}
# Plots each run writes into its checkpoint directory, served under "<run field>_<file name>".
REWARD_PLOTS = ("accuracy_by_strength.png", "accuracy_by_safety_label.png", "calibration.png", "loss.png")
RUN_PLOTS = {
    "reward_helpfulness_run": REWARD_PLOTS,
    "reward_safety_run": REWARD_PLOTS,
    "rejection_sampling_run": ("rejection_sampling.png",),
    "ppo_run": ("ppo_curves.png",),
}


def _iterations() -> "QuerySet[Iteration]":
    """Iterations with every run and checkpoint their page shows, in one query (and one for the batches)."""
    return Iteration.objects.select_related(
        "reward_helpfulness_run__output_checkpoint",
        "reward_safety_run__output_checkpoint",
        "rejection_sampling_run__output_checkpoint",
        "ppo_run__output_checkpoint",
        "temperature_scan",
        "base_policy",
        "new_policy",
    ).prefetch_related("batches", "evaluation_reward_models")


def iteration_list() -> "QuerySet[Iteration]":
    """The newest iterations."""
    return _iterations()[:LIST_LIMIT]


def iteration_by_id(*, iteration_id: int) -> Iteration:
    iteration = _iterations().filter(pk=iteration_id).first()
    if iteration is None:
        raise NotFound(ITERATION_NOT_FOUND)
    return iteration


def template_list() -> "QuerySet[BatchTemplate]":
    return BatchTemplate.objects.all()


def template_by_id(*, template_id: int) -> BatchTemplate:
    template = BatchTemplate.objects.filter(pk=template_id).first()
    if template is None:
        raise NotFound(TEMPLATE_NOT_FOUND)
    return template


def temperature_stratum(first: float, second: float) -> str:
    """A vote's temperature stratum: "T=0.7" when both responses were drawn at 0.7, else "T=0.7 vs 1.0"."""
    low, high = sorted((first, second))
    return f"T={low:g}" if low == high else f"T={low:g} vs {high:g}"


def _policy_votes_with_temperatures() -> list[tuple[str, str, float, float]]:
    """(winner, loser, winner's temperature, loser's temperature) of every judged annotation of two responses from
    different checkpoints. Gold comparisons are left out: their answers measure the annotator, not the models."""
    rows = (
        Annotation.objects.filter(skip_reason="", comparison__is_gold=False)
        .exclude(chosen_response__checkpoint=F("rejected_response__checkpoint"))
        .values_list(
            "chosen_response__checkpoint__name",
            "rejected_response__checkpoint__name",
            "chosen_response__temperature",
            "rejected_response__temperature",
        )
    )
    return list(rows)


def policy_votes() -> list[tuple[str, str]]:
    """(winner, loser) checkpoint names of every vote between two checkpoints, all temperatures pooled."""
    return [(winner, loser) for winner, loser, _, _ in _policy_votes_with_temperatures()]


def leaderboard() -> list[Rating]:
    """Bradley-Terry ratings of every policy checkpoint from human votes, best first (unvoted ones at the prior)."""
    policies = Checkpoint.objects.filter(kind=CheckpointKind.POLICY).values_list("name", flat=True)
    return bradley_terry(policy_votes(), players=policies)


def leaderboard_by_temperature() -> dict[str, list[Rating]]:
    """The leaderboard fitted within each temperature stratum: in "T=0.7" both sides were drawn at 0.7, so a
    checkpoint's rating there owes nothing to temperature."""
    strata: dict[str, list[tuple[str, str]]] = {}
    for winner, loser, winner_t, loser_t in _policy_votes_with_temperatures():
        strata.setdefault(temperature_stratum(winner_t, loser_t), []).append((winner, loser))
    return {stratum: bradley_terry(votes) for stratum, votes in sorted(strata.items())}


def _head_to_head(new: Checkpoint, previous: Checkpoint, batch: Batch | None) -> list[tuple[bool, float, float]]:
    """(new won, new's temperature, previous's temperature) of every judged vote between the two."""
    votes = Annotation.objects.filter(skip_reason="", comparison__is_gold=False).filter(
        Q(chosen_response__checkpoint=new, rejected_response__checkpoint=previous)
        | Q(chosen_response__checkpoint=previous, rejected_response__checkpoint=new)
    )
    if batch is not None:
        votes = votes.filter(comparison__batch=batch)
    rows = votes.values_list(
        "chosen_response__checkpoint_id", "chosen_response__temperature", "rejected_response__temperature"
    )
    return [
        (True, chosen_t, rejected_t) if winner == new.pk else (False, rejected_t, chosen_t)
        for winner, chosen_t, rejected_t in rows
    ]


def human_win_rate(*, new: Checkpoint, previous: Checkpoint, batch: Batch | None = None) -> WinRate:
    """How often annotators chose `new`'s response over `previous`'s (in `batch`, or anywhere), with a Wilson
    interval, all temperatures pooled."""
    votes = _head_to_head(new, previous, batch)
    return wilson(sum(won for won, _, _ in votes), len(votes))


def human_win_rate_by_temperature(
    *, new: Checkpoint, previous: Checkpoint, batch: Batch | None = None
) -> dict[str, WinRate]:
    """The win rate of `new` over `previous` in each (new's temperature, previous's temperature) stratum, keyed
    "new T=0.7 / previous T=1.0": a win that holds where both sides share a temperature is the checkpoint's."""
    strata: dict[str, list[bool]] = {}
    for won, new_t, previous_t in _head_to_head(new, previous, batch):
        strata.setdefault(f"new T={new_t:g} / previous T={previous_t:g}", []).append(won)
    return {stratum: wilson(sum(wins), len(wins)) for stratum, wins in sorted(strata.items())}


def _runs(iteration: Iteration) -> dict[str, TrainingRun | None]:
    return {field: getattr(iteration, field) for field in RUN_PLOTS}


def iteration_progress(*, iteration: Iteration) -> float:
    """0..1: finished steps by their weight, plus the running step's share by its runs' progress."""
    if iteration.step == Iteration.Step.DONE:
        return 1.0
    # The scan's share counts only in an iteration that scans; the other steps' shares then make up the whole.
    weights = {
        step: weight
        for step, weight in STEP_WEIGHTS.items()
        if step != Iteration.Step.TEMPERATURE_SCAN or iteration.scan_temperatures
    }
    total = sum(weights.values())
    weights = {step: weight / total for step, weight in weights.items()}
    steps = list(weights)
    current = Iteration.Step(iteration.step)
    done = sum(weights[step] for step in steps[: steps.index(current)])
    if current == Iteration.Step.TEMPERATURE_SCAN:
        scan = iteration.temperature_scan
        return done + weights[current] * (scan.progress if scan is not None else 0.0)
    runs = {
        Iteration.Step.REWARD_MODELS: [iteration.reward_helpfulness_run, iteration.reward_safety_run],
        Iteration.Step.POLICY: [iteration.rejection_sampling_run, iteration.ppo_run],
    }.get(current, [])
    started = [run for run in runs if run is not None]
    expected = len(iteration.methods) if current == Iteration.Step.POLICY else max(len(started), 1)
    inside = sum(1.0 if run.status == TrainingRun.Status.DONE else run.progress for run in started)
    return done + weights[current] * (inside / expected if expected else 0.0)


def iteration_plots(*, iteration: Iteration) -> dict[str, Path]:
    """The plots that exist so far, by the name the API serves them under."""
    plots = {}
    for field, run in _runs(iteration).items():
        if run is None or run.output_checkpoint is None:
            continue
        directory = checkpoint_local_path(checkpoint=run.output_checkpoint)
        for name in RUN_PLOTS[field]:
            if (directory / name).is_file():
                plots[f"{field.removesuffix('_run')}_{name}"] = directory / name
    scan = iteration.temperature_scan
    if scan is not None and scan.output_dir and (Path(scan.output_dir) / SCAN_PLOT).is_file():
        plots[SCAN_PLOT] = Path(scan.output_dir) / SCAN_PLOT
    return plots


def iteration_plot_path(*, iteration: Iteration, name: str) -> Path:
    plots = iteration_plots(iteration=iteration)
    if name not in plots:
        raise NotFound(PLOT_NOT_FOUND)
    return plots[name]


def _reward_model_accuracy(run: TrainingRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    evaluation = run.metrics.get("eval") or {}
    return {
        "training_run": run.pk,
        "checkpoint": run.output_checkpoint.name if run.output_checkpoint else None,
        "status": run.status,
        "test_pairs": evaluation.get("pairs"),
        "accuracy": evaluation.get("accuracy"),
        "by_strength": evaluation.get("by_strength"),
        "by_strength_pairs": evaluation.get("by_strength_pairs"),
        "by_safety_label": evaluation.get("by_safety_label"),
        "without_safety_label": evaluation.get("without_safety_label"),
    }


def iteration_report(*, iteration: Iteration) -> dict[str, Any]:
    """What the iteration achieved: reward-model accuracy by strength and by safety label, held-out reward of new
    vs previous policy (under the optimised reward models, and per reward model, the previous iteration's and the
    named ones included), the human win rate of new over previous (once a batch compared them) and the
    leaderboard."""
    evaluation = {key: value for key, value in iteration.evaluation.items() if key != "samples"}
    human = human_by_temperature = None
    if iteration.new_policy is not None:
        new, previous = iteration.new_policy, iteration.base_policy
        human = asdict(human_win_rate(new=new, previous=previous))
        strata = human_win_rate_by_temperature(new=new, previous=previous)
        human_by_temperature = {key: asdict(rate) for key, rate in strata.items()}
    return {
        "iteration": iteration.pk,
        "status": iteration.status,
        "base_policy": iteration.base_policy.name,
        "new_policy": iteration.new_policy.name if iteration.new_policy else None,
        "reward_models": {
            "helpfulness": _reward_model_accuracy(iteration.reward_helpfulness_run),
            "safety": _reward_model_accuracy(iteration.reward_safety_run),
        },
        "heldout_reward": evaluation or None,
        "human_win_rate": human,
        "human_win_rate_by_temperature": human_by_temperature,
        "leaderboard": [asdict(rating) for rating in leaderboard()],
        "leaderboard_by_temperature": {
            stratum: [asdict(rating) for rating in ratings] for stratum, ratings in leaderboard_by_temperature().items()
        },
        "temperature_scan": _scan_summary(iteration.temperature_scan),
        "rejection_sampling": _rejection_sampling_summary(iteration.rejection_sampling_run),
        "plots": sorted(iteration_plots(iteration=iteration)),
    }


def _scan_summary(scan: TemperatureScan | None) -> dict[str, Any] | None:
    if scan is None:
        return None
    return {
        "scan": scan.pk,
        "status": scan.status,
        "best_temperature": scan.best_temperature,
        "mean_reward": scan.result.get("mean_reward"),
    }


def _rejection_sampling_summary(run: TrainingRun | None) -> dict[str, Any] | None:
    """The temperature it sampled at (and the scan it came from) and how many examples came from earlier
    iterations' pools."""
    if run is None:
        return None
    keys = ("temperature", "temperature_scan", "from_earlier_iterations", "mean_best_score", "mean_training_score")
    return {"training_run": run.pk, "status": run.status, **{key: run.metrics.get(key) for key in keys}}


# --- temperature scans ------------------------------------------------------------------------------


def temperature_scan_by_id(*, scan_id: int) -> TemperatureScan:
    scan = TemperatureScan.objects.select_related("checkpoint").filter(pk=scan_id).first()
    if scan is None:
        raise NotFound(SCAN_NOT_FOUND)
    return scan


def temperature_scans_of(*, checkpoint: Checkpoint) -> "QuerySet[TemperatureScan]":
    """The checkpoint's scans, newest first."""
    return TemperatureScan.objects.filter(checkpoint=checkpoint)[:LIST_LIMIT]


def temperature_scan_latest(*, checkpoint_id: int) -> TemperatureScan | None:
    """The checkpoint's newest finished scan: the one whose best temperature rejection sampling's "scan" takes."""
    return TemperatureScan.objects.filter(checkpoint_id=checkpoint_id, status=TemperatureScan.Status.DONE).first()


def temperature_scan_plot_path(*, scan: TemperatureScan) -> Path:
    path = Path(scan.output_dir) / SCAN_PLOT if scan.output_dir else None
    if path is None or scan.status != TemperatureScan.Status.DONE or not path.is_file():
        raise NotFound(SCAN_PLOT_NOT_FOUND)
    return path


def ranked_temperatures(*, scan: TemperatureScan) -> list[float]:
    """The scan's temperatures, best first: by the mean best reward among the most samples (N = max_samples)."""
    curves: dict[str, list[float]] = scan.result.get("max_reward_by_n", {})
    return [float(t) for t in sorted(curves, key=lambda t: -curves[t][-1])]
