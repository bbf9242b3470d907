"""The floors of the code base, bottom to top, and a checker that every import runs downwards.

A module may import its own top-level package, anything on a lower floor, and nothing on its own floor or above.
Two packages share a floor when neither may import the other (sampler, annotator and exports are built side by
side on the core). Function-local imports count like any other: they are how back-ties used to hide.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FLOORS: tuple[tuple[str, ...], ...] = (
    ("preference_format",),
    ("backend",),
    ("sampler", "annotator", "exports"),
    ("training",),
    ("loop",),
    ("insights",),
    ("config",),
)
"""The data flow: the vocabulary, the core, the three ways data enters and leaves it, training (files in,
checkpoints out), the loop that runs them, the dashboards that read everything, and the wiring on top."""

DJANGO_FREE = ("preference_format", "sampler.engines", "training")
"""Packages that never import Django or a Django app: they run on GPU machines from files alone."""

ALLOWED_INTO = {"training": ("sampler.engines",)}
"""Of a lower floor's package, only these parts may be imported from the named package (training generates and
scores through the engines, not through the Django side of the sampler)."""

DJANGO_PACKAGES = ("django", "rest_framework", "celery", "django_filters", "drf_spectacular")


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    imported: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.imported}: {self.reason}"


def _floor_of(package: str) -> int | None:
    for index, floor in enumerate(FLOORS):
        if package in floor:
            return index
    return None


def _imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def _project_package(imported: str) -> str | None:
    package = imported.split(".")[0]
    return package if _floor_of(package) is not None else None


def module_violations(module: str, source: str, path: str) -> list[Violation]:
    """What is wrong with the imports of one module (`module` is its dotted name)."""
    package = module.split(".")[0]
    floor = _floor_of(package)
    if floor is None:
        return []
    django_free = _within(module, DJANGO_FREE)
    allowed = ALLOWED_INTO.get(package, ())
    found = []
    for line, imported in _imports(ast.parse(source)):
        target = _project_package(imported)
        target_floor = _floor_of(target) if target else None
        if django_free and imported.split(".")[0] in DJANGO_PACKAGES:
            found.append(Violation(path, line, imported, f"{module} must not depend on Django"))
        elif django_free and target is not None and not _within(imported, DJANGO_FREE):
            found.append(Violation(path, line, imported, f"{module} must not depend on Django ({target})"))
        elif target is None or target_floor is None or target == package:
            continue
        elif target_floor >= floor:
            where = "its own floor" if target_floor == floor else "a floor above it"
            found.append(Violation(path, line, imported, f"{package} may not import {target} ({where})"))
        elif allowed and target in {part.split(".")[0] for part in allowed} and not _within(imported, allowed):
            reason = f"{package} may use only {', '.join(allowed)} of {target}"
            found.append(Violation(path, line, imported, reason))
    return found


def tree_violations(root: Path) -> list[Violation]:
    """Every violation under `root`; tests and migrations are exempt (they exercise or freeze the code)."""
    found = []
    for floor in FLOORS:
        for package in floor:
            for path in sorted((root / package).rglob("*.py")):
                relative = path.relative_to(root)
                if "tests" in relative.parts or "migrations" in relative.parts:
                    continue
                module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
                found += module_violations(module, path.read_text(encoding="utf-8"), str(relative))
    return found
