"""Exports: files that datasets and TRL load as they are, deterministic, filtered, split, mixed."""

import gc
import json
import re
from pathlib import Path

import pytest
from datasets import load_dataset

from backend.accounts.roles import Role
from backend.batches.models import Comparison, Focus
from backend.batches.services.annotations import annotation_submit, assignment_lease_comparison, assignment_lease_next
from backend.batches.services.batches import batch_open
from backend.batches.services.comparisons import ResponseInput
from backend.batches.services.gold import gold_comparison_create
from backend.errors import InvalidInput
from exports.imports import preferences_import
from exports.models import ExportRun
from exports.services import export_build, export_create
from preference_format import STRENGTHS
from tests.factories import make_batch, make_comparison, make_user

pytestmark = pytest.mark.django_db


def judge(batch, annotator, *, choice="a", strength="better", label=""):
    assignment = assignment_lease_next(batch=batch, annotator=annotator)
    assert assignment is not None
    annotation, _ = annotation_submit(
        assignment_id=assignment.pk,
        annotator=annotator,
        choice=choice,
        strength=strength,
        safety_label=label,
        idempotency_key=f"k{assignment.pk}",
    )
    return annotation


def judged_batch(count: int, *, focus=Focus.HELPFULNESS, overlap=1, held_out_size=0, held_out_fraction=0.1):
    """`count` judged comparisons, all in train unless `held_out_size` lets the split draw some into test."""
    batch = make_batch(
        comparisons=count,
        focus=focus,
        overlap=overlap,
        held_out_size=held_out_size,
        held_out_fraction=held_out_fraction,
    )
    annotators = [make_user(Role.ANNOTATOR) for _ in range(overlap)]
    for i in range(count):
        for annotator in annotators:
            label = ["chosen_safe_other_unsafe", "both_safe", "both_unsafe"][i % 3] if focus == Focus.SAFETY else ""
            judge(batch, annotator, strength=STRENGTHS[i % 4], label=label)
    return batch


def build(**options) -> ExportRun:
    run, _ = export_create(created_by=None, enqueue=lambda _: None, **options)
    return export_build(run_id=run.pk)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_files_load_with_datasets_in_both_formats_with_the_splits():
    batch = judged_batch(20, held_out_size=1000, held_out_fraction=0.5)
    test = Comparison.objects.filter(batch=batch, is_held_out=True).count()
    assert 0 < test < 20
    run = build(filters={"batches": [batch.pk]}, margin_scheme="small")
    directory = Path(run.directory)
    for fmt, ext in (("json", "jsonl"), ("parquet", "parquet")):
        data = load_dataset(fmt, data_files={s: str(directory / f"{s}.{ext}") for s in ("train", "test")})
        assert (data["train"].num_rows, data["test"].num_rows) == (20 - test, test)
        row = data["train"][0]
        assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
        assert row["margin"] in (1.0, 2 / 3, 1 / 3, 0.0)
        assert row["chosen_checkpoint"] and row["chosen_temperature"] in (0.7, 1.0)
        assert len(row["annotators"][0]) == 16 and row["week"] == batch.iso_week
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["counts"]["split"] == {"test": test, "train": 20 - test}
    by_split = manifest["counts"]["by_split"]
    assert by_split["test"]["focus"] == {"helpfulness": test}
    assert sum(by_split["train"]["strength"].values()) == 20 - test
    assert set(by_split["train"]["strength"]) <= set(STRENGTHS)
    assert manifest["statistics"]["comparisons"] == 20 and manifest["statistics"]["tokenizer"] == "whitespace"
    assert {f["name"] for f in manifest["files"]} == {"train.jsonl", "test.jsonl", "train.parquet", "test.parquet"}
    assert run.rows_written == 20 and run.progress == 1.0


def test_the_same_filters_give_byte_identical_files():
    judged_batch(12)
    first, second = build(margin_scheme="large"), build(margin_scheme="large")
    hashes = [{f["name"]: f["sha256"] for f in run.manifest["files"]} for run in (first, second)]
    assert hashes[0] == hashes[1]
    assert Path(first.directory) != Path(second.directory)


def test_margins_follow_the_llama2_schemes_and_none_drops_the_column():
    judged_batch(8)
    for scheme, expected in (("small", [1.0, 2 / 3, 1 / 3, 0.0]), ("large", [3.0, 2.0, 1.0, 0.0])):
        rows = read_jsonl(Path(build(margin_scheme=scheme).directory) / "train.jsonl")
        by_strength = {row["strength"]: row["margin"] for row in rows}
        assert [by_strength[s] for s in STRENGTHS] == pytest.approx(expected)
    rows = read_jsonl(Path(build(margin_scheme="none").directory) / "train.jsonl")
    assert "margin" not in rows[0]


def test_filters_by_batch_focus_and_unsure():
    helpful = judged_batch(8, held_out_size=0)
    judged_batch(6, focus=Focus.SAFETY, held_out_size=0)
    assert build(filters={"batches": [helpful.pk]}).rows_written == 8
    assert build(filters={"focus": "safety"}).rows_written == 6
    assert build(filters={"batches": [helpful.pk], "drop_unsure": True}).rows_written == 6
    assert build(filters={"until": "2000-01-01T00:00:00Z"}).rows_written == 0


def test_majority_consensus_records_agreement_and_per_annotation_keeps_every_vote():
    batch = make_batch(comparisons=2, overlap=3, held_out_size=0)
    voters = [make_user(Role.ANNOTATOR) for _ in range(3)]
    for comparison_round in range(2):
        for index, voter in enumerate(voters):
            assignment = assignment_lease_next(batch=batch, annotator=voter)
            assert assignment is not None
            shown_first = assignment.swap is False
            # Two voters prefer the first response, one the second, whatever the display order.
            wants_first = index < 2
            choice = "a" if wants_first == shown_first else "b"
            annotation_submit(
                assignment_id=assignment.pk,
                annotator=voter,
                choice=choice,
                strength="better",
                idempotency_key=f"{comparison_round}-{index}",
            )
    rows = read_jsonl(Path(build(granularity="comparison").directory) / "train.jsonl")
    assert len(rows) == 2 and all(row["agreement"] == pytest.approx(2 / 3) for row in rows)
    assert all(row["chosen"][0]["content"] == "first answer" and len(row["annotators"]) == 2 for row in rows)
    every = read_jsonl(Path(build(granularity="annotation").directory) / "train.jsonl")
    assert len(every) == 6


def test_a_safety_export_never_has_the_forbidden_label():
    judged_batch(9, focus=Focus.SAFETY)
    rows = read_jsonl(Path(build(filters={"focus": "safety"}).directory) / "train.jsonl")
    labels = {row["safety_label"] for row in rows}
    assert labels <= {"chosen_safe_other_unsafe", "both_safe", "both_unsafe"} and labels
    assert all(row["is_safety"] for row in rows)


def test_multi_turn_prompts_carry_the_whole_dialogue():
    from backend.batches.services.prompts import dialogue_continue

    annotator = make_user(Role.ANNOTATOR)
    first = judge(make_batch(comparisons=1, held_out_size=0), annotator)
    next_prompt, _ = dialogue_continue(annotation_id=first.pk, annotator=annotator, next_message="And then?")
    batch = make_batch(comparisons=0, open_it=False, held_out_size=0)
    make_comparison(batch, prompt=next_prompt)
    batch = batch_open(batch=batch)
    judge(batch, annotator)
    rows = read_jsonl(Path(build(filters={"batches": [batch.pk]}).directory) / "train.jsonl")
    assert [m["role"] for m in rows[0]["prompt"]] == ["user", "assistant", "user"]
    assert rows[0]["prompt"][-1]["content"] == "And then?"


def test_table6_statistics_count_the_words_of_the_exported_texts():
    """The manifest reads the word counts stored with each text; they must be what counting the files gives."""
    from backend.batches.services.prompts import dialogue_continue

    annotator = make_user(Role.ANNOTATOR)
    first = judge(make_batch(comparisons=1, held_out_size=0), annotator)
    next_prompt, _ = dialogue_continue(annotation_id=first.pk, annotator=annotator, next_message="And  then,\tplease?")
    batch = make_batch(comparisons=0, open_it=False, held_out_size=0)
    make_comparison(batch, prompt=next_prompt, texts=("a long\n\nanswer in two paragraphs", "short"))
    make_comparison(batch, texts=("naïve café answer", "x"))
    batch = batch_open(batch=batch)
    judge(batch, annotator)
    judge(batch, annotator, choice="b")
    preferences_import(content=HH, source="hh", harmless=False)
    run = build(filters={"batches": [batch.pk]}, mix="helpfulness", seed=1)
    rows = read_jsonl(Path(run.directory) / "train.jsonl")
    prompt_words = [sum(len(m["content"].split()) for m in row["prompt"]) for row in rows]
    response_words = [
        (len(row["chosen"][0]["content"].split()) + len(row["rejected"][0]["content"].split())) // 2 for row in rows
    ]
    statistics = run.manifest["statistics"]
    assert {row["source"] for row in rows} == {"platform", "hh"}
    assert statistics["avg_tokens_in_prompt"] == round(sum(prompt_words) / len(rows), 2)
    assert statistics["avg_tokens_in_response"] == round(sum(response_words) / len(rows), 2)


HH = "\n".join(
    json.dumps(pair)
    for pair in [
        {
            "chosen": "\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help with that.",
            "rejected": "\n\nHuman: How do I pick a lock?\n\nAssistant: Use a tension wrench.",
        },
        {
            "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Insult me.\n\nAssistant: I'd rather not.",
            "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Insult me.\n\nAssistant: You fool.",
        },
    ]
).encode()


def test_the_reward_model_mixes_follow_llama2():
    judged_batch(10, held_out_size=0)
    judged_batch(6, focus=Focus.SAFETY, held_out_size=0)
    preferences_import(content=HH, source="hh-harmless", harmless=True)
    helpful = build(mix="helpfulness", seed=3)
    # All 10 helpfulness rows plus an equal amount from safety (6) and open-source (2) data: 8 available.
    assert helpful.manifest["mix"]["helpfulness"] == 10
    assert helpful.manifest["mix"]["sampled_from_safety_and_open_source"] == 8
    assert helpful.rows_written == 18
    safety = build(mix="safety", seed=3)
    # 6 safety + 2 harmless = 8, then helpfulness at 90/10: round(8 / 9) = 1.
    assert safety.manifest["mix"] == {
        "kind": "safety",
        "safety_and_harmless": 8,
        "sampled_helpfulness": 1,
        "seed": 3,
        "test_file": "the safety test rows only: the data sampled into the mix comes from train",
    }
    sources = safety.manifest["counts"]["source"]
    assert sources == {"hh-harmless": 2, "platform": 7}
    again = build(mix="safety", seed=3)
    assert [f["sha256"] for f in again.manifest["files"]] == [f["sha256"] for f in safety.manifest["files"]]


def test_a_mix_keeps_the_other_focus_out_of_its_test_file_unless_asked():
    judged_batch(14, held_out_size=0)  # more than the safety rows: the mix samples all of them
    safety = judged_batch(12, focus=Focus.SAFETY, held_out_size=1000, held_out_fraction=0.5)
    safety_test = Comparison.objects.filter(batch=safety, is_held_out=True).count()
    assert 0 < safety_test < 12

    def test_rows(run: ExportRun) -> list[dict]:
        path = Path(run.directory) / "test.jsonl"
        return read_jsonl(path) if path.exists() else []

    plain = build(mix="helpfulness", seed=1)
    # The helpfulness batch holds nothing out, so the test file would hold only safety rows: it holds none.
    assert test_rows(plain) == []
    assert plain.manifest["mix"]["sampled_from_safety_and_open_source"] == 12 - safety_test
    assert "only" in plain.manifest["mix"]["test_file"]
    mixed = build(mix="helpfulness", seed=1, test_mix=True)
    assert len(test_rows(mixed)) == safety_test and all(row["is_safety"] for row in test_rows(mixed))
    assert "test_mix" in mixed.manifest["mix"]["test_file"]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"test_mix": "yes"}, "test_mix"),
        ({"formats": ["csv"]}, "formats"),
        ({"margin_scheme": "huge"}, "margin_scheme"),
        ({"granularity": "row"}, "granularity"),
        ({"filters": {"batches": [987654]}}, "filters.batches"),
        ({"filters": {"since": "yesterday"}}, "filters.since"),
        ({"filters": {"colour": "red"}}, "filters"),
        ({"tokenizer": "/no/such/tokenizer"}, "tokenizer"),
    ],
)
def test_bad_options_name_the_field(options, field):
    with pytest.raises(InvalidInput) as error:
        export_create(created_by=None, enqueue=lambda _: None, **options)
    assert error.value.field == field and not ExportRun.objects.exists()


def test_a_failed_build_leaves_no_files(monkeypatch, exports_root):
    judged_batch(3)
    run, _ = export_create(created_by=None, enqueue=lambda _: None)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("exports.writers.SplitWriter.files", broken)
    with pytest.raises(OSError):
        export_build(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == ExportRun.Status.FAILED and "disk full" in run.error
    assert not exports_root.exists() or list(exports_root.iterdir()) == []


def test_a_build_leaves_the_garbage_collector_as_it_found_it(monkeypatch):
    """The export tunes the collector while it streams (a process-wide setting): a Celery worker gets it back."""
    judged_batch(3)
    thresholds = gc.get_threshold()
    build()
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("exports.stats.DatasetStatistics.add", broken)
    with pytest.raises(OSError):
        build(margin_scheme="large")
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def test_overlapping_builds_share_the_collector_tuning():
    """Two exports on threads of one worker: the first to finish must not restore the collector under the other."""
    from exports.collector import collector_tuned

    thresholds = gc.get_threshold()
    with collector_tuned():
        with collector_tuned():
            assert gc.get_threshold()[2] == 100
        assert gc.get_threshold()[2] == 100 and gc.get_freeze_count() > 0
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def test_a_two_step_trl_reward_trainer_run_takes_the_files_as_they_are(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from sampler.engines.tiny import build_tiny_checkpoint

    judged_batch(8, held_out_size=0)
    run = build(margin_scheme="small", formats=["parquet"])
    data = load_dataset("parquet", data_files={"train": str(Path(run.directory) / "train.parquet")})["train"]
    checkpoint = build_tiny_checkpoint(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    config = RewardConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=2,
        bf16=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
    )
    result = RewardTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer).train()
    assert result.global_step == 2 and result.training_loss > 0


def test_the_command_prints_a_progress_bar_and_the_directory(capsys):
    from django.core.management import call_command

    judged_batch(4)
    call_command("export", "--formats", "jsonl", "--margin", "small")
    out = capsys.readouterr()
    assert re.search(r"Export \d+: 4 rows in .*export-\d{6}", out.out)


def with_judged_gold(batch, count: int) -> None:
    """Add gold comparisons to the batch, each answered by an annotator."""
    checkpoint = batch.checkpoints.first()
    annotator = make_user(Role.ANNOTATOR)
    for i in range(count):
        item, _ = gold_comparison_create(
            batch=batch,
            prompt_text=f"Gold question {i}?",
            first=ResponseInput(checkpoint=checkpoint, text=f"right {i}", temperature=0.7),
            second=ResponseInput(checkpoint=checkpoint, text=f"wrong {i}", temperature=0.7),
            better="first",
            created_by=None,
        )
        lease = assignment_lease_comparison(comparison=item, annotator=annotator)
        assert lease is not None
        annotation_submit(
            assignment_id=lease.pk, annotator=annotator, choice="a", strength="better", idempotency_key=f"gold{i}"
        )


def test_gold_comparisons_are_left_out_unless_include_gold_asks_for_them():
    batch = judged_batch(4, held_out_size=0)
    with_judged_gold(batch, 2)
    plain = build(filters={"batches": [batch.pk]})
    prompts = [row["prompt"][-1]["content"] for row in read_jsonl(Path(plain.directory) / "train.jsonl")]
    assert plain.rows_written == 4 and not any(p.startswith("Gold question") for p in prompts)
    assert plain.manifest["filters"]["include_gold"] is False
    with_gold = build(filters={"batches": [batch.pk], "include_gold": True})
    prompts = [row["prompt"][-1]["content"] for row in read_jsonl(Path(with_gold.directory) / "train.jsonl")]
    assert with_gold.rows_written == 6 and sorted(p for p in prompts if p.startswith("Gold")) == [
        "Gold question 0?",
        "Gold question 1?",
    ]
    manifest = json.loads((Path(with_gold.directory) / "manifest.json").read_text())
    assert manifest["filters"]["include_gold"] is True and manifest["statistics"]["comparisons"] == 6


def test_the_command_keeps_gold_only_with_include_gold(capsys):
    from django.core.management import call_command

    with_judged_gold(judged_batch(3), 1)
    call_command("export", "--formats", "jsonl")
    call_command("export", "--formats", "jsonl", "--include-gold")
    out = capsys.readouterr().out
    assert re.findall(r"Export \d+: (\d+) rows", out) == ["3", "4"]
