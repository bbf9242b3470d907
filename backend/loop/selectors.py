"""Reads for the loop: the human leaderboard of policy checkpoints."""

from django.db.models import F

from backend.batches.models import Annotation
from backend.checkpoints.models import Checkpoint, CheckpointKind
from backend.loop.bradley_terry import Rating, bradley_terry


def policy_votes() -> list[tuple[str, str]]:
    """(winner, loser) checkpoint names: every judged annotation of two responses from different checkpoints."""
    rows = (
        Annotation.objects.filter(skip_reason="")
        .exclude(chosen_response__checkpoint=F("rejected_response__checkpoint"))
        .values_list("chosen_response__checkpoint__name", "rejected_response__checkpoint__name")
    )
    return [(winner, loser) for winner, loser in rows]


def leaderboard() -> list[Rating]:
    """Bradley-Terry ratings of every policy checkpoint from human votes, best first (unvoted ones at the prior)."""
    policies = Checkpoint.objects.filter(kind=CheckpointKind.POLICY).values_list("name", flat=True)
    return bradley_terry(policy_votes(), players=policies)
