"""Reward-model scores of stored responses, computed once by a Celery task and read by the dashboards, and the
scoring requests that wait for that task."""

from django.db import models

from backend.batches.models import Response
from backend.checkpoints.models import Checkpoint


class ResponseScore(models.Model):
    """The raw reward a reward-model checkpoint gives a response (in its prompt's dialogue context)."""

    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="scores")
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.CASCADE, related_name="response_scores")
    score = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["response", "checkpoint"], name="response_score_once_per_checkpoint")
        ]

    def __str__(self) -> str:
        return f"Response {self.response_id} scored {self.score:.3f} by {self.checkpoint_id}"


class ScoringRequest(models.Model):
    """A reward model's scoring, asked for and not finished yet.

    Kept so that a request whose publish was lost (the broker down) is published again by the re-enqueue sweep
    (config.job_sweep), as exports and training runs are.
    """

    checkpoint = models.OneToOneField(Checkpoint, on_delete=models.CASCADE, related_name="scoring_request")
    requested_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        state = "finished" if self.finished_at else "waiting"
        return f"Scoring by checkpoint {self.checkpoint_id}, {state}"
