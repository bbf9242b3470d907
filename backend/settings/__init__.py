"""Settings modules: `base` (shared, read from the environment), `embedded`, `production`, `test`."""
