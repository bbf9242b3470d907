"""The checkpoint registry: policies and reward models, with their lineage."""
