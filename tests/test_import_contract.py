"""Imports run one way, up the floors of tests/import_contract.py; the checker itself is shown to catch each kind."""

from pathlib import Path

import pytest

from tests.import_contract import FLOORS, module_violations, tree_violations

ROOT = Path(__file__).resolve().parent.parent


def test_every_import_runs_down_the_floors() -> None:
    violations = tree_violations(ROOT)
    assert not violations, "imports against the flow:\n" + "\n".join(map(str, violations))


def test_every_top_level_package_has_a_floor() -> None:
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == {package for floor in FLOORS for package in floor}


@pytest.mark.parametrize(
    ("module", "source", "reason"),
    [
        ("backend.batches.models", "from loop.models import Iteration", "a floor above it"),
        ("sampler.sampling", "def f():\n    from insights.models import ResponseScore", "a floor above it"),
        ("exports.rows", "import sampler.planning", "its own floor"),
        ("training.data", "from sampler.services import batch_sample_chunk", "must not depend on Django"),
        ("training.data", "import django.conf", "must not depend on Django"),
        ("sampler.engines.tiny", "from backend.errors import InvalidInput", "must not depend on Django"),
        ("preference_format", "from backend.batches.models import Strength", "must not depend on Django"),
    ],
)
def test_the_checker_refuses_a_back_import(module: str, source: str, reason: str) -> None:
    violations = module_violations(module, source, "example.py")
    assert len(violations) == 1 and reason in violations[0].reason


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("loop.tasks", "from backend.jobs import publish\nfrom sampler.engines import get_engine"),
        ("training.rollout", "from sampler.engines.transformers_engine import TransformersEngine"),
        ("exports.rows", "from preference_format import Strength"),
        ("config.urls", "from insights import apis"),
    ],
)
def test_the_checker_lets_downward_imports_through(module: str, source: str) -> None:
    assert module_violations(module, source, "example.py") == []
