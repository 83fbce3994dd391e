"""The import graph of the package: no cycle, arrows only point down the layers
``cli -> machine_check -> widgets -> app -> core -> io/config`` (lazy imports inside functions
count too), and no Qt (nor napari, which brings it) anywhere in the application package
``app/``."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "napari_synfoc"
# Lower number = lower layer; a module may import its own layer and the ones below.
LAYERS = {"config": 0, "io": 0, "core": 1, "app": 2, "widgets": 3, "machine_check": 4, "cli": 5}
# What the Qt-free application package must never import (napari and magicgui import Qt).
QT_MODULES = {"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "napari", "magicgui"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_pkg else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
    if node.module is None:  # from . import a, b
        return [f"{base}.{a.name}" for a in node.names]
    return [base] + [f"{base}.{a.name}" for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in its body)."""
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = _resolve(mod, path.name == "__init__.py", node)
            else:
                continue
            deps |= {n for n in names if n in files and n != mod}
        graph[mod] = deps
    return graph


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_no_upward_arrow():
    up = [
        f"{m} -> {d}"
        for m, deps in import_graph().items()
        for d in deps
        if layer(m) is not None and layer(d) is not None and layer(d) > layer(m)
    ]
    assert not up, (
        "imports against cli -> machine_check -> widgets -> app -> core -> io/config:\n"
        + "\n".join(sorted(up))
    )


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first search meets (a package importing its own submodule is not
    one)."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    return cycles


def test_no_import_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def external_imports(tree: ast.AST) -> set[str]:
    """The top-level names of the absolute imports in ``tree`` (anywhere in its body)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_no_qt_in_the_application_package():
    app = sorted((PKG / "app").rglob("*.py"))
    assert len(app) >= 10, "napari_synfoc/app/ holds the Qt-free application"
    found = [
        f"{_module_name(p)} imports {sorted(bad)}"
        for p in app
        if (bad := external_imports(ast.parse(p.read_text(encoding="utf-8"))) & QT_MODULES)
    ]
    assert not found, "Qt in the Qt-free application package:\n" + "\n".join(found)


def test_the_checker_sees_a_cycle_and_an_upward_arrow():
    assert layer("napari_synfoc.core.trainer") == 1 and layer("napari_synfoc.cli") == 5
    assert layer("napari_synfoc.app.controller") == 2 and layer("napari_synfoc.widgets.dock") == 3
    graph = import_graph()
    assert "napari_synfoc.app.controller" in graph["napari_synfoc.widgets.dock"]
    lazy = "def f():\n    from napari.qt.threading import create_worker\nimport qtpy.QtCore\n"
    assert external_imports(ast.parse(lazy)) & QT_MODULES == {"napari", "qtpy"}
    graph = import_graph()
    assert "napari_synfoc.core.inference" in graph["napari_synfoc.core.trainer"]
    assert "napari_synfoc.config" in graph["napari_synfoc.cli"]
    assert "napari_synfoc.core.checkpoint" in graph["napari_synfoc.core.trainer"]  # from . import
    # the evaluate <-> trainer cycle this package used to have (through lazy imports) is caught
    old = {"a.core.evaluate": {"a.core.trainer"}, "a.core.trainer": {"a.core.evaluate"}}
    assert find_cycles(old) == [["a.core.evaluate", "a.core.trainer", "a.core.evaluate"]]
