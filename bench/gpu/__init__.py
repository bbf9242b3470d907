"""The GPU check (``bash bench/gpu/run.sh``): the figures only a GPU gives, as one JSON; a dry mode on CPU for CI."""
