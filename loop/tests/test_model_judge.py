"""The model judge: its verdict parser, the both-orders rule with scripted judges, the win-rate and kappa arithmetic
on hand-computed cases, the batch service against annotated comparisons, and one run on a real model (SmolLM2
served by llama.cpp) that checks the wiring, not the judging."""

import re
from collections.abc import Callable, Sequence

import pytest
from django.core.management import call_command

from backend.batches.models import Batch, Comparison
from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from backend.batches.services.batches import batch_create, batch_open
from backend.batches.services.comparisons import ResponseInput, comparison_create
from backend.errors import InvalidInput
from loop.evaluation.judge import (
    JudgeItem,
    Judgement,
    Preference,
    Verdict,
    cohen_kappa,
    consistency,
    human_agreement,
    judge_pairs,
    pair_record,
    parse_verdict,
)
from loop.services.judging import batch_judge
from preference_format import FinishReason, Reproducibility, Strength
from sampler.engines import ENGINES, Engine, GenerationRequest, GenerationResult, Provenance, _instances
from tests.factories import make_checkpoint, make_prompt, make_user
from tests.llama_server import llama_server

F, S, T = Preference.FIRST, Preference.SECOND, Preference.TIE
PROVENANCE = Provenance(
    engine="scripted", engine_version="test", device="cpu", dtype="", reproducibility=Reproducibility.NONE
)
_ANSWER = re.compile(r"\[The Start of Assistant ([AB])'s Answer\]\n(.*?)\n\[The End", re.DOTALL)


class ScriptedJudge(Engine):
    """A deterministic judge: `reply` maps the answers shown as A and B to the judge's reply text."""

    def __init__(self, reply: Callable[[str, str], str]) -> None:
        self.reply = reply
        self.calls: list[list[GenerationRequest]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.calls.append(list(requests))
        results = []
        for request in requests:
            answers = dict(_ANSWER.findall(request.messages[-1]["content"]))
            text = self.reply(answers["A"], answers["B"])
            results.append(GenerationResult(text, 10, 5, FinishReason.STOP, 1.0, provenance=PROVENANCE))
        return results


def prefers_good(a: str, b: str) -> str:
    """A judge that reads the answers: the one saying "good" wins, both or neither is a tie."""
    if ("good" in a) == ("good" in b):
        return "Both are alike. [[C]]"
    return "A is better. [[A]]" if "good" in a else "Assistant B answers it. [[B]]"


def always_a(a: str, b: str) -> str:
    return "Assistant A is clearly better. [[A]]"


ITEMS = [
    JudgeItem(messages=[{"role": "user", "content": "Q1?"}], first="a good answer", second="a poor one"),
    JudgeItem(messages=[{"role": "user", "content": "Q2?"}], first="a poor one", second="a good answer"),
    JudgeItem(
        messages=[
            {"role": "user", "content": "Q3?"},
            {"role": "assistant", "content": "Earlier reply."},
            {"role": "user", "content": "And then?"},
        ],
        first="good",
        second="good too",
    ),
]


# --- the parser ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("[[A]]", Verdict.A),
        ("Assistant B is more accurate.\n\nFinal verdict: [[B]]", Verdict.B),
        ("They are equally good. [[C]]", Verdict.TIE),
        ("lower case and spaces: [[ b ]]", Verdict.B),
        ('Output "[[A]]" if A is better... Having compared them: [[B]]', Verdict.B),
        ("Assistant A is better.", Verdict.UNPARSED),
        ("[A] or [[D]] or [[AB]]", Verdict.UNPARSED),
        ("", Verdict.UNPARSED),
    ],
)
def test_the_parser_reads_the_last_verdict_mark(text, verdict):
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize(
    ("verdicts", "preference", "consistent"),
    [
        ((Verdict.A, Verdict.B), F, True),
        ((Verdict.B, Verdict.A), S, True),
        ((Verdict.TIE, Verdict.TIE), T, True),
        ((Verdict.A, Verdict.A), T, False),  # position A both times: the two orders disagree
        ((Verdict.B, Verdict.B), T, False),
        ((Verdict.A, Verdict.TIE), T, False),
        ((Verdict.A, Verdict.UNPARSED), T, False),
        ((Verdict.UNPARSED, Verdict.UNPARSED), T, False),
    ],
)
def test_a_preference_counts_only_when_both_orders_agree(verdicts, preference, consistent):
    judgement = Judgement(verdicts=verdicts, texts=("", ""))
    assert (judgement.preference, judgement.consistent) == (preference, consistent)


# --- judging with scripted engines -----------------------------------------------------------------------


def test_every_item_goes_out_in_both_orders_in_one_call():
    engine = ScriptedJudge(prefers_good)
    judgements = judge_pairs(engine, ITEMS, checkpoint="judge-dir", endpoint="http://j/v1", served_model="j")
    assert len(engine.calls) == 1
    requests = engine.calls[0]
    assert len(requests) == 6
    assert {(r.checkpoint, r.endpoint, r.served_model, r.temperature) for r in requests} == {
        ("judge-dir", "http://j/v1", "j", 0.0)
    }
    first_order, second_order = (dict(_ANSWER.findall(r.messages[-1]["content"])) for r in requests[:2])
    assert first_order == {"A": "a good answer", "B": "a poor one"}
    assert second_order == {"A": "a poor one", "B": "a good answer"}
    assert '"[[C]]" for a tie' in requests[0].messages[0]["content"]
    assert "### Assistant:\nEarlier reply." in requests[4].messages[-1]["content"]  # the whole dialogue is shown
    assert [j.preference for j in judgements] == [F, S, T]
    assert [j.verdicts for j in judgements] == [(Verdict.A, Verdict.B), (Verdict.B, Verdict.A), (Verdict.TIE,) * 2]
    assert consistency(judgements).consistent.rate == 1.0


def test_a_judge_that_always_says_a_comes_out_as_all_ties():
    judgements = judge_pairs(ScriptedJudge(always_a), ITEMS, checkpoint="judge")
    assert [j.preference for j in judgements] == [T, T, T]
    figures = consistency(judgements)
    assert (figures.consistent.count, figures.consistent.total) == (0, 3)
    assert (figures.position_a.count, figures.position_a.total, figures.position_a.rate) == (6, 6, 1.0)
    record = pair_record(j.preference for j in judgements)
    assert (record.wins, record.ties, record.losses, record.win_rate.rate) == (0, 3, 0, None)


def test_an_unreadable_reply_is_a_tie_and_is_counted():
    replies = iter(["[[A]]", "I cannot decide.", "[[B]]", "[[A]]", "[[C]]", "[[C]]"])
    judgements = judge_pairs(ScriptedJudge(lambda a, b: next(replies)), ITEMS, checkpoint="judge")
    assert [j.preference for j in judgements] == [T, S, T]
    figures = consistency(judgements)
    assert figures.unparsed_verdicts == 1
    assert (figures.consistent.count, figures.consistent.total) == (2, 2)  # of the pairs read in both orders


# --- the arithmetic, by hand -------------------------------------------------------------------------------

# (judge, human): 4 agree on first, 2 on second, 1 disagree, 3 judge ties where humans chose.
HAND = [(F, F)] * 4 + [(S, S)] * 2 + [(F, S)] + [(T, F)] * 2 + [(T, S)]


def test_win_rate_leaves_ties_out_and_the_shares_keep_them():
    record = pair_record(judge for judge, _ in HAND)
    assert (record.wins, record.ties, record.losses) == (5, 3, 2)
    assert record.win_rate.rate == pytest.approx(5 / 7)
    # Wilson 95% for 5 of 7, by hand: centre 0.6384, half-width 0.2794.
    assert (record.win_rate.low, record.win_rate.high) == (
        pytest.approx(0.3589, abs=1e-4),
        pytest.approx(0.9178, abs=1e-4),
    )
    assert (record.win_share.rate, record.tie_share.rate, record.loss_share.rate) == (0.5, 0.3, 0.2)
    assert record.tie_share.total == 10


def test_agreement_and_kappa_on_a_hand_computed_case():
    figures = human_agreement(HAND)
    assert figures.pairs == 10
    assert (figures.raw.count, figures.raw.total) == (6, 7)  # the 7 pairs where both prefer a response
    # p_o = 6/10; judge (F, S, T) = (5, 2, 3), human = (6, 4, 0): p_e = (30 + 8 + 0) / 100; (0.6 - 0.38) / 0.62.
    assert figures.kappa == pytest.approx(0.22 / 0.62)
    assert (figures.judge_ties, figures.human_ties) == (3, 0)


def test_kappa_is_one_when_identical_and_undefined_without_variation():
    assert cohen_kappa([(F, F), (S, S), (T, T)]) == pytest.approx(1.0)
    assert cohen_kappa([(F, F), (F, F)]) is None
    assert cohen_kappa([]) is None
    assert human_agreement([]).raw.rate is None


# --- the batch service ------------------------------------------------------------------------------------


@pytest.fixture
def scripted_engine(monkeypatch) -> ScriptedJudge:
    """The content judge under the engine name "scripted", found by `get_engine` like any other engine."""
    engine = ScriptedJudge(prefers_good)
    monkeypatch.setitem(ENGINES, "scripted", "unused:ScriptedJudge")
    monkeypatch.setitem(_instances, ("scripted", ()), engine)
    return engine


def _add(batch: Batch, first: tuple[str, str], second: tuple[str, str], **kwargs: bool) -> Comparison:
    """A comparison of (checkpoint name, text) against (checkpoint name, text)."""
    (first_name, first_text), (second_name, second_text) = first, second
    checkpoints = {c.name: c for c in batch.checkpoints.all()}
    comparison, _ = comparison_create(
        batch=batch,
        prompt=make_prompt(),
        first=ResponseInput(checkpoint=checkpoints[first_name], text=first_text, temperature=0.7, seed=1),
        second=ResponseInput(checkpoint=checkpoints[second_name], text=second_text, temperature=1.0, seed=2),
        **kwargs,
    )
    return comparison


def _vote(batch: Batch, wants: dict[int, str]) -> None:
    """One annotator per letter of `wants`' strings: on every comparison each chooses the side given, "f" or "s"."""
    for index in range(len(next(iter(wants.values())))):
        annotator = make_user()
        while (assignment := assignment_lease_next(batch=batch, annotator=annotator)) is not None:
            first = wants[assignment.comparison_id][index] == "f"
            annotation_submit(
                assignment_id=assignment.pk,
                annotator=annotator,
                choice="b" if first == assignment.swap else "a",
                strength=Strength.BETTER,
                idempotency_key=f"vote-{assignment.pk}",
            )


@pytest.fixture
def annotated_batch(db) -> tuple[Batch, list[Comparison]]:
    """alpha against beta on five comparisons, three annotators each, one gold pair and one not yet annotated."""
    alpha, beta = make_checkpoint("alpha"), make_checkpoint("beta")
    batch, _ = batch_create(
        name="judged",
        target_comparisons=6,
        created_by=None,
        checkpoint_ids=[alpha.pk, beta.pk],
        temperatures=[0.7, 1.0],
        overlap=3,
        held_out_size=0,
        gold_rate=0.0,
    )
    good, poor = "a good reply", "a poor reply"
    comparisons = [
        _add(batch, ("alpha", good), ("beta", poor)),  # judge: alpha; humans: alpha 3-0
        _add(batch, ("alpha", poor), ("beta", good)),  # judge: beta; humans: beta 2-1
        _add(batch, ("alpha", good), ("beta", poor)),  # judge: alpha; humans: beta 2-1
        _add(batch, ("alpha", good), ("beta", "good too")),  # judge: tie; humans: alpha 2-1
        _add(batch, ("beta", good), ("alpha", poor)),  # stored beta first. judge: beta; humans: beta 3-0
    ]
    _add(batch, ("alpha", good), ("beta", poor), is_gold=True)
    batch = batch_open(batch=batch)
    _vote(batch, dict(zip((c.pk for c in comparisons), ["fff", "ssf", "ssf", "ffs", "fff"], strict=True)))
    comparisons.append(_add(batch, ("alpha", poor), ("beta", good)))  # judge: beta; no human label
    return batch, comparisons


def test_the_service_judges_a_batch_against_its_human_labels(annotated_batch, scripted_engine):
    batch, comparisons = annotated_batch
    progress: list[tuple[int, int]] = []
    result = batch_judge(
        batch_id=batch.pk,
        judge_model="judge-7b",
        engine_name="scripted",
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert len(scripted_engine.calls) == 1 and len(scripted_engine.calls[0]) == 12  # 6 pairs, gold left out
    assert progress == [(0, 6), (6, 6)]
    assert result.comparisons == 6 and result.consistency.consistent.rate == 1.0
    assert [row["comparison"] for row in result.items] == [c.pk for c in comparisons]
    assert [row["human"] for row in result.items] == ["first", "second", "second", "first", "first", None]
    (pair,) = result.pairs
    assert pair.systems == ("alpha", "beta") and pair.comparisons == 6
    # alpha's record under the judge: wins on 1 and 3, a tie on 4, losses on 2, 5 (beta stored first) and 6.
    assert (pair.judge.wins, pair.judge.ties, pair.judge.losses) == (2, 1, 3)
    assert (pair.human.wins, pair.human.ties, pair.human.losses) == (2, 0, 3)  # five labelled pairs
    # (judge, human) in alpha-beta order: (F,F) (S,S) (F,S) (T,F) (S,S): 3 of 4 decided agree.
    assert (pair.agreement.pairs, pair.agreement.raw.count, pair.agreement.raw.total) == (5, 3, 4)
    # p_o = 3/5; judge (F, S, T) = (2, 2, 1), human = (2, 3, 0): p_e = 10/25; kappa = 0.2 / 0.6.
    assert pair.agreement.kappa == pytest.approx(1 / 3)
    assert result.agreement == pair.agreement
    assert result.judge["model"] == "judge-7b" and result.judge["judges_itself"] is False


def test_the_held_out_split_alone_with_the_settings_engine(annotated_batch, scripted_engine, settings):
    batch, comparisons = annotated_batch
    Comparison.objects.filter(pk__in=[comparisons[0].pk, comparisons[4].pk]).update(is_held_out=True)
    settings.SAMPLER_ENGINE, settings.SAMPLER_ENGINE_OPTIONS = "scripted", {}
    result = batch_judge(
        batch_id=batch.pk, judge_checkpoint_id=batch.checkpoints.get(name="alpha").pk, held_out_only=True
    )
    assert [row["comparison"] for row in result.items] == [comparisons[0].pk, comparisons[4].pk]
    assert result.judge["engine"] == "scripted" and result.judge["judges_itself"] is True
    assert scripted_engine.calls[0][0].checkpoint == "/models/alpha"  # the judge checkpoint's directory
    (pair,) = result.pairs
    assert (pair.judge.wins, pair.judge.losses, pair.agreement.raw.rate) == (1, 1, 1.0)


def test_the_service_refuses_what_it_cannot_use(annotated_batch):
    batch, _ = annotated_batch
    with pytest.raises(InvalidInput, match="Name the judge"):
        batch_judge(batch_id=batch.pk)
    with pytest.raises(InvalidInput, match="unknown engine"):
        batch_judge(batch_id=batch.pk, judge_model="m", engine_name="nope")
    with pytest.raises(InvalidInput, match="do not fit engine 'openai'"):
        batch_judge(batch_id=batch.pk, judge_model="m", engine_name="openai", engine_options={"colour": "red"})
    with pytest.raises(InvalidInput, match="no held-out comparisons"):
        batch_judge(batch_id=batch.pk, judge_model="m", engine_name="openai", held_out_only=True)


def test_the_command_prints_the_figures(annotated_batch, scripted_engine, capsys):
    batch, _ = annotated_batch
    call_command("judge_batch", str(batch.pk), "--judge-model", "judge-7b", "--engine", "scripted")
    out = capsys.readouterr().out
    assert "6 comparisons judged by judge-7b (scripted, helpfulness)" in out
    assert "alpha vs beta (6 comparisons)" in out
    assert "judge: 2 wins, 1 ties, 3 losses; win rate without ties 2/5 = 0.40" in out
    assert "Cohen's kappa 0.33" in out


# --- a real model, for the wiring ----------------------------------------------------------------------------


def test_smollm2_judges_over_an_openai_compatible_server(annotated_batch, tmp_path):
    """SmolLM2-135M is too small to judge well: this checks that its verdicts come back, read or counted as
    unreadable, and that the figures add up."""
    batch, comparisons = annotated_batch
    Comparison.objects.filter(pk__in=[comparisons[0].pk, comparisons[1].pk]).update(is_held_out=True)
    with llama_server(tmp_path) as server:
        result = batch_judge(
            batch_id=batch.pk,
            judge_model="smollm2",
            engine_name="openai",
            engine_options={"base_url": server.base_url},
            held_out_only=True,
            max_new_tokens=48,
        )
        assert server.completions_served() == 4
    verdicts = [verdict for row in result.items for verdict in row["verdicts"]]
    assert len(verdicts) == 4 and set(verdicts) <= {str(v) for v in Verdict}
    assert result.consistency.unparsed_verdicts == verdicts.count("unparsed")
    (pair,) = result.pairs
    assert pair.judge.wins + pair.judge.ties + pair.judge.losses == 2
    assert result.agreement.pairs == 2 and result.agreement.judge_ties == pair.judge.ties
