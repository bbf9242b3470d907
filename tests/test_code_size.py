"""Small modules and short functions: none over the limits below outside tests and migrations, unless the reason
for a long function is written beside it (a comment block right above its def, starting with "# long:")."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE_LINES = 500
FUNCTION_LINES = 80
REASON = "# long:"


def _sources() -> list[Path]:
    return [
        path
        for path in sorted(ROOT.rglob("*.py"))
        if not {".venv", "var", "tests", "migrations", "node_modules"} & set(path.relative_to(ROOT).parts)
    ]


def test_no_module_is_over_the_limit() -> None:
    long = [f"{p.relative_to(ROOT)}: {n}" for p in _sources() if (n := p.read_text().count("\n")) > MODULE_LINES]
    assert not long, f"modules over {MODULE_LINES} lines:\n" + "\n".join(long)


def test_no_function_is_over_the_limit_without_a_reason() -> None:
    long = []
    for path in _sources():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.end_lineno is None:
                continue
            above = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 2
            comments = []
            while above >= 0 and lines[above].strip().startswith("#"):
                comments.append(lines[above].strip())
                above -= 1
            explained = bool(comments) and comments[-1].startswith(REASON)
            size = node.end_lineno - node.lineno + 1
            if size > FUNCTION_LINES and not explained:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {size} lines")
    assert not long, f"functions over {FUNCTION_LINES} lines with no '{REASON}' comment above:\n" + "\n".join(long)
