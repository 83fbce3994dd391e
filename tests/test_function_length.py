"""No function in napari_synfoc/core or napari_synfoc/app is longer than 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "napari_synfoc"
CHECKED = ("core", "app")
MAX_LINES = 80


def long_functions(source: str, max_lines: int = MAX_LINES) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function in ``source`` over ``max_lines``.

    The length runs from the ``def`` line (decorators excluded) to the last line of the body,
    docstring included.
    """
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = child.end_lineno - child.lineno + 1
                    if length > max_lines:
                        found.append((name, child.lineno, length))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def test_counter_counts_def_to_last_line() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(80))  # def + 80 lines = 81
    source = f"class A:\n    def short(self):\n        return 1\n\ndef long():\n{body}\n"
    assert long_functions(source) == [("long", 5, 81)]
    assert long_functions(source, max_lines=81) == []
    inner_body = "\n".join(f"        y{i} = {i}" for i in range(3))
    nested = "def outer():\n    def inner():\n" + inner_body
    assert long_functions(nested, max_lines=4) == [("outer", 1, 5)]
    assert long_functions(nested, max_lines=3) == [("outer", 1, 5), ("outer.inner", 2, 4)]


@pytest.mark.parametrize("folder", CHECKED)
def test_no_function_over_80_lines(folder: str) -> None:
    files = sorted((PACKAGE / folder).rglob("*.py"))
    assert files, f"no Python files under {PACKAGE / folder}"
    too_long = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name} ({length} lines)"
        for path in files
        for name, line, length in long_functions(path.read_text(encoding="utf-8"))
    ]
    assert not too_long, f"functions over {MAX_LINES} lines: " + "; ".join(too_long)
