import pytest


@pytest.fixture(autouse=True)
def exports_root(settings, tmp_path):
    """Each test writes its exports into its own temporary folder."""
    settings.EXPORTS_ROOT = tmp_path / "exports"
    return settings.EXPORTS_ROOT
