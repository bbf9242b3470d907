"""The sampler: generation engines (``sampler.engines``, no Django) and the work that fills batches with pairs."""
