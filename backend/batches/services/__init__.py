"""Writes to the annotation core. Each service validates before it writes and writes atomically."""
