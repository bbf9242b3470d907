"""Prompts, dialogues, batches, comparisons, leases and annotations: the annotation core."""
