"""A model judge over a batch's comparisons (`loop.evaluation.judge`), set beside the human labels of the same pairs.

Every non-gold comparison of the batch (or of its held-out split) is judged in both orders by a judge model on any
engine: the sampler's own (the SAMPLER_ENGINE settings) or one named with its options, e.g. `openai` with
`{"base_url": ...}`. The figures come per pair of systems: a system is a checkpoint, or a checkpoint at one
temperature when both responses of a pair come from the same checkpoint (the demo batches sample one checkpoint at
two temperatures). The results name checkpoints, so they are for staff and the command line only: nothing here is
served to annotators. Nothing is stored either: the judging is read-only and is run again to be seen again.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.batches.models import Annotation, Batch, Comparison, Focus
from backend.batches.selectors import batch_by_id, prompt_messages
from backend.checkpoints.selectors import checkpoint_by_id, checkpoint_local_path
from backend.errors import InvalidInput
from loop.evaluation.judge import (
    Consistency,
    Criteria,
    HumanAgreement,
    JudgeItem,
    Judgement,
    PairRecord,
    Preference,
    consistency,
    flipped,
    human_agreement,
    judge_pairs,
    pair_record,
)
from sampler.engines import Engine, EngineError, get_engine
from sampler.services import sampler_engine

JUDGE_REQUIRED = "Name the judge: judge_checkpoint (a registered checkpoint) or judge_model (a model the engine knows)."
JUDGE_TWICE = "Name the judge once: judge_checkpoint or judge_model, not both."
ENGINE_OPTIONS_INVALID = "engine options do not fit engine {name!r}: {reason}"
OPTIONS_WITHOUT_ENGINE = "engine options need an engine name (the sampler's engine takes its settings' options)."
NOTHING_TO_JUDGE = "Batch {batch} has no {split}comparisons to judge (gold comparisons are never judged)."
CHUNK_PAIRS = 16
"""Pairs per engine call: 32 requests, batched by the engine, and a step of the progress figure."""

Progress = Callable[[int, int], None]
"""(pairs judged so far, pairs in all)."""


@dataclass(frozen=True)
class JudgeModel:
    """The judge model as generation requests name it, and how the results label it."""

    label: str
    checkpoint: str
    endpoint: str = ""
    served_model: str = ""
    checkpoint_id: int | None = None


@dataclass(frozen=True)
class PairFigures:
    """One pair of systems: the first system's record under the judge and under the humans, and their agreement."""

    systems: tuple[str, str]
    comparisons: int
    judge: PairRecord
    human: PairRecord
    """Over the comparisons with a human label (the majority of their annotations; an even split is a tie)."""
    agreement: HumanAgreement


@dataclass(frozen=True)
class BatchJudgement:
    """A batch judged: the judge's settings, its behaviour under the swap, and its figures against the humans."""

    batch: int
    judge: dict[str, Any]
    held_out_only: bool
    comparisons: int
    consistency: Consistency
    agreement: HumanAgreement
    """Over every labelled comparison, each one in its system pair's name order (as in `pairs`)."""
    pairs: list[PairFigures]
    items: list[dict[str, Any]] = field(repr=False)
    """Per comparison: its systems, the verdict in each order, the judge's preference, the human label, and the
    judge's two replies (its explanations)."""


@dataclass(frozen=True)
class _Pair:
    comparison_id: int
    item: JudgeItem
    systems: tuple[str, str]
    human: Preference | None


def judge_model_resolve(*, judge_checkpoint_id: int | None, judge_model: str) -> JudgeModel:
    """A registered checkpoint (its directory, and its server when it has one) or a bare model name."""
    if judge_checkpoint_id is not None and judge_model:
        raise InvalidInput(JUDGE_TWICE, field="judge_model")
    if judge_checkpoint_id is not None:
        checkpoint = checkpoint_by_id(checkpoint_id=judge_checkpoint_id)
        return JudgeModel(
            label=checkpoint.name,
            checkpoint=str(checkpoint_local_path(checkpoint=checkpoint)),
            endpoint=checkpoint.serving_url,
            served_model=checkpoint.served_model_name,
            checkpoint_id=checkpoint.pk,
        )
    if not judge_model:
        raise InvalidInput(JUDGE_REQUIRED, field="judge_checkpoint")
    return JudgeModel(label=judge_model, checkpoint=judge_model)


def judge_engine(*, engine_name: str = "", engine_options: dict[str, Any] | None = None) -> tuple[str, Engine]:
    """The named engine built with its options, or the sampler's own engine when none is named."""
    if not engine_name:
        if engine_options:
            raise InvalidInput(OPTIONS_WITHOUT_ENGINE, field="engine_options")
        return sampler_engine()
    try:
        return engine_name, get_engine(engine_name, **(engine_options or {}))
    except EngineError as error:
        raise InvalidInput(str(error), field="engine") from error
    except TypeError as error:  # an option the engine's class does not take, or an unhashable value
        message = ENGINE_OPTIONS_INVALID.format(name=engine_name, reason=error)
        raise InvalidInput(message, field="engine_options") from error


def _systems(comparison: Comparison) -> tuple[str, str]:
    first, second = comparison.first_response, comparison.second_response
    if first.checkpoint_id != second.checkpoint_id:
        return first.checkpoint.name, second.checkpoint.name
    return f"{first.checkpoint.name} T={first.temperature:g}", f"{second.checkpoint.name} T={second.temperature:g}"


def _human_labels(batch: Batch) -> dict[int, Preference]:
    """Each annotated comparison's majority label: the side most annotators chose, a tie on an even split."""
    votes: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    rows = Annotation.objects.filter(comparison__batch=batch, comparison__is_gold=False, skip_reason="").values_list(
        "comparison_id", "chosen_response_id", "comparison__first_response_id"
    )
    for comparison_id, chosen, first in rows:
        votes[comparison_id][0 if chosen == first else 1] += 1
    return {
        comparison_id: Preference.TIE if first == second else Preference.FIRST if first > second else Preference.SECOND
        for comparison_id, (first, second) in votes.items()
    }


def _pairs_to_judge(batch: Batch, *, held_out_only: bool) -> list[_Pair]:
    comparisons = Comparison.objects.filter(batch=batch, is_gold=False).select_related(
        "prompt", "first_response__checkpoint", "second_response__checkpoint"
    )
    if held_out_only:
        comparisons = comparisons.filter(is_held_out=True)
    humans = _human_labels(batch)
    return [
        _Pair(
            comparison_id=comparison.pk,
            item=JudgeItem(
                messages=prompt_messages(prompt=comparison.prompt),
                first=comparison.first_response.text,
                second=comparison.second_response.text,
            ),
            systems=_systems(comparison),
            human=humans.get(comparison.pk),
        )
        for comparison in comparisons
    ]


Oriented = dict[tuple[str, str], list[tuple[Preference, Preference | None]]]
"""(judge preference, human label or None) per comparison, grouped by system pair, turned to the pair's name order."""


def _oriented(judged: list[tuple[_Pair, Judgement]]) -> Oriented:
    """Preferences in one order per system pair (its names sorted), so that kappa's marginals mean one thing."""
    groups: Oriented = defaultdict(list)
    for pair, judgement in judged:
        key = (min(pair.systems), max(pair.systems))
        flip = pair.systems != key
        human = None if pair.human is None else _turned(pair.human, flip)
        groups[key].append((_turned(judgement.preference, flip), human))
    return groups


def _labelled(preferences: list[tuple[Preference, Preference | None]]) -> list[tuple[Preference, Preference]]:
    return [(judge, human) for judge, human in preferences if human is not None]


def _pair_figures(groups: Oriented) -> list[PairFigures]:
    return [
        PairFigures(
            systems=systems,
            comparisons=len(preferences),
            judge=pair_record(judge for judge, _ in preferences),
            human=pair_record(human for _, human in _labelled(preferences)),
            agreement=human_agreement(_labelled(preferences)),
        )
        for systems, preferences in sorted(groups.items())
    ]


def _turned(preference: Preference, flip: bool) -> Preference:
    return flipped(preference) if flip else preference


def _item_row(pair: _Pair, judgement: Judgement) -> dict[str, Any]:
    return {
        "comparison": pair.comparison_id,
        "systems": list(pair.systems),
        "verdicts": [str(verdict) for verdict in judgement.verdicts],
        "preference": str(judgement.preference),
        "human": None if pair.human is None else str(pair.human),
        "replies": list(judgement.texts),
    }


def _judge_all(
    engine: Engine, pairs: list[_Pair], judge: JudgeModel, options: dict[str, Any], on_progress: Progress | None
) -> list[Judgement]:
    """Every pair judged, CHUNK_PAIRS to an engine call, the progress told after each."""
    judgements: list[Judgement] = []
    if on_progress is not None:
        on_progress(0, len(pairs))
    for start in range(0, len(pairs), CHUNK_PAIRS):
        chunk = pairs[start : start + CHUNK_PAIRS]
        judgements += judge_pairs(
            engine,
            [pair.item for pair in chunk],
            checkpoint=judge.checkpoint,
            endpoint=judge.endpoint,
            served_model=judge.served_model,
            **options,
        )
        if on_progress is not None:
            on_progress(len(judgements), len(pairs))
    return judgements


def batch_judge(
    *,
    batch_id: int,
    judge_checkpoint_id: int | None = None,
    judge_model: str = "",
    engine_name: str = "",
    engine_options: dict[str, Any] | None = None,
    held_out_only: bool = False,
    temperature: float = 0.0,
    max_new_tokens: int = 512,
    on_progress: Progress | None = None,
) -> BatchJudgement:
    """Judge the batch's non-gold comparisons (only the held-out split with `held_out_only`) and compute the
    figures. Raises InvalidInput for a judge or engine it cannot use; the engine's EngineError passes through."""
    batch = batch_by_id(batch_id=batch_id)
    judge = judge_model_resolve(judge_checkpoint_id=judge_checkpoint_id, judge_model=judge_model)
    name, engine = judge_engine(engine_name=engine_name, engine_options=engine_options)
    pairs = _pairs_to_judge(batch, held_out_only=held_out_only)
    if not pairs:
        raise InvalidInput(NOTHING_TO_JUDGE.format(batch=batch.pk, split="held-out " if held_out_only else ""))
    criteria = Criteria.SAFETY if batch.focus == Focus.SAFETY else Criteria.HELPFULNESS
    options = {"temperature": temperature, "max_new_tokens": max_new_tokens, "criteria": criteria}
    judged = list(zip(pairs, _judge_all(engine, pairs, judge, options, on_progress), strict=True))
    compared = set(batch.checkpoints.values_list("id", flat=True))
    groups = _oriented(judged)
    return BatchJudgement(
        batch=batch.pk,
        judge={
            "engine": name,
            "model": judge.label,
            "criteria": str(criteria),
            "temperature": temperature,
            "max_new_tokens": max_new_tokens,
            # A judge among the systems it compares may favour its own style (self-preference).
            "judges_itself": judge.checkpoint_id in compared,
        },
        held_out_only=held_out_only,
        comparisons=len(pairs),
        consistency=consistency([judgement for _, judgement in judged]),
        agreement=human_agreement([row for rows in groups.values() for row in _labelled(rows)]),
        pairs=_pair_figures(groups),
        items=[_item_row(pair, judgement) for pair, judgement in judged],
    )
