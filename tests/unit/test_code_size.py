"""Small modules with one job: no module of streamer/ or bench/ over 300 lines, no function over 60."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("streamer", "bench")
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def long_functions(path: Path) -> list[str]:
    """`path:line name (N lines)` for each function or method over the limit, decorators included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines = node.end_lineno - start + 1
            if lines > MAX_FUNCTION_LINES:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_the_checks_see_the_code():
    assert len(modules()) > 50


def test_no_module_is_over_300_lines():
    sizes = {p: len(p.read_text().splitlines()) for p in modules()}
    over = [f"{p.relative_to(ROOT)} ({n} lines)" for p, n in sizes.items() if n > MAX_MODULE_LINES]
    assert not over, "modules over 300 lines: split them by job:\n" + "\n".join(over)


def test_no_function_is_over_60_lines():
    over = [line for p in modules() for line in long_functions(p)]
    assert not over, "functions over 60 lines:\n" + "\n".join(over)
