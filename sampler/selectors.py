"""Reads of sampling state."""

from django.contrib.auth.models import User

from backend.batches.models import LivePair
from backend.errors import NotFound

LIVE_PAIR_NOT_FOUND = "No such live pair of yours."


def live_pair_get(*, live_pair_id: int, annotator: User) -> LivePair:
    """A live pair the annotator asked for; 404 for anyone else's."""
    live_pair = (
        LivePair.objects.select_related("assignment", "batch").filter(pk=live_pair_id, requested_by=annotator).first()
    )
    if live_pair is None:
        raise NotFound(LIVE_PAIR_NOT_FOUND)
    return live_pair
