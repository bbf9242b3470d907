"""What the sampler tells the floors above it, which it does not import."""

from django.dispatch import Signal

responses_scored = Signal()
"""Sent once a reward model has scored responses that were stored (uncertainty selection keeps a batch's pairs by
their scores), with `checkpoint` (the reward-model Checkpoint) and `scores` ({response id: raw reward}).
`insights` keeps them as ResponseScore rows, which its drift figures read."""
