"""`manage.py judge_batch BATCH_ID`: a model judge over a batch's comparisons, here and now, beside the human labels."""

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backend.errors import ServiceError
from backend.progress import progress_bar
from loop.evaluation.statistics import Share
from loop.services.judging import BatchJudgement, batch_judge
from sampler.engines import EngineError


def _share(value: Share) -> str:
    if value.rate is None:
        return f"-/{value.total}"
    return f"{value.count}/{value.total} = {value.rate:.2f} [{value.low:.2f}, {value.high:.2f}]"


def _kappa(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def report_lines(result: BatchJudgement) -> list[str]:
    """The figures as the command prints them: consistency, then each system pair, then the agreement overall."""
    judge, check = result.judge, result.consistency
    lines = [
        f"Batch {result.batch}: {result.comparisons} comparisons judged by {judge['model']} ({judge['engine']}, "
        f"{judge['criteria']}){' on the held-out split' if result.held_out_only else ''}",
        f"  unparsed verdicts: {check.unparsed_verdicts} of {2 * check.pairs} (each a tie)",
        f"  consistent under the swap: {_share(check.consistent)}",
        f"  verdicts naming position A: {_share(check.position_a)} (0.50 is no position bias)",
    ]
    if judge["judges_itself"]:
        lines.append("  note: the judge is one of the compared checkpoints (it may prefer its own answers)")
    for pair in result.pairs:
        first, second = pair.systems
        lines += [
            f"{first} vs {second} ({pair.comparisons} comparisons)",
            f"  judge: {pair.judge.wins} wins, {pair.judge.ties} ties, {pair.judge.losses} losses; "
            f"win rate without ties {_share(pair.judge.win_rate)}; tie share {_share(pair.judge.tie_share)}",
            f"  human: {pair.human.wins} wins, {pair.human.ties} ties, {pair.human.losses} losses; "
            f"win rate without ties {_share(pair.human.win_rate)}",
            f"  agreement: {_share(pair.agreement.raw)} where both prefer one; kappa {_kappa(pair.agreement.kappa)}",
        ]
    overall = result.agreement
    lines.append(
        f"Agreement with humans on {overall.pairs} labelled comparisons: {_share(overall.raw)} where both prefer one; "
        f"Cohen's kappa {_kappa(overall.kappa)}; judge ties {overall.judge_ties}, human ties {overall.human_ties}"
    )
    return lines


class Command(BaseCommand):
    help = (
        "Judge a batch's comparisons with a model in both orders and print its win rates and its agreement with the "
        "annotators. Staff only: the figures name the checkpoints."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("batch_id", type=int)
        judge = parser.add_mutually_exclusive_group(required=True)
        judge.add_argument("--judge-checkpoint", type=int, help="Id of a registered checkpoint to judge with.")
        judge.add_argument("--judge-model", default="", help="A model name the engine knows (e.g. a served model).")
        parser.add_argument("--engine", default="", help="transformers, vllm or openai (default: SAMPLER_ENGINE).")
        parser.add_argument("--engine-options", default="{}", help='JSON, e.g. \'{"base_url": "http://h:8000/v1"}\'.')
        parser.add_argument("--held-out-only", action="store_true", help="Judge only the held-out split.")
        parser.add_argument("--max-new-tokens", type=int, default=512, help="The judge's reply budget.")
        parser.add_argument("--json", action="store_true", help="Print every figure and verdict as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            engine_options = json.loads(options["engine_options"])
        except json.JSONDecodeError as error:
            raise CommandError(f"--engine-options is not JSON: {error}") from error
        with progress_bar(f"judging batch {options['batch_id']}", unit="pair") as bar:
            try:
                result = batch_judge(
                    batch_id=options["batch_id"],
                    judge_checkpoint_id=options["judge_checkpoint"],
                    judge_model=options["judge_model"],
                    engine_name=options["engine"],
                    engine_options=engine_options,
                    held_out_only=options["held_out_only"],
                    max_new_tokens=options["max_new_tokens"],
                    on_progress=lambda done, total: bar.show(done, total),
                )
            except ServiceError as error:
                raise CommandError(f"{error.field or 'input'}: {error.message}") from error
            except EngineError as error:
                raise CommandError(f"engine: {error}") from error
        if options["json"]:
            self.stdout.write(json.dumps(asdict(result), indent=2))
        else:
            self.stdout.write("\n".join(report_lines(result)))
