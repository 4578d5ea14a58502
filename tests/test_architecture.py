"""The shape of the code, checked: data flows one way through the packages (no import cycles, no
import of a package downstream), MLflow is imported only by the tracking package, and no function
grows past 60 lines. Imports inside functions count too, so a lazy import cannot hide a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("harness", "registry")
# Upstream first: a module may import its own layer and the layers above it in this list.
LAYERS = (
    ("registry",),
    ("harness.device", "harness.folders", "harness.data"),
    ("harness.config",),
    ("harness.analysis",),
    ("harness.tracking",),
    ("harness.train",),
    ("harness.execute",),
    ("harness.report",),
    ("harness.cli", "harness.__main__", "harness"),
)
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The harness/registry modules `name` imports anywhere in its file."""
    targets = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in MODULES else base)
    return {t for t in targets if t in MODULES and t != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name: str) -> int:
    best = None
    for rank, members in enumerate(LAYERS):
        for member in members:
            if name == member or name.startswith(member + "."):
                if best is None or len(member) > best[1]:
                    best = (rank, len(member))
    assert best is not None, f"{name} belongs to no layer: add its package to LAYERS"
    return best[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _without_own_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges to a module's own enclosing packages dropped: importing `a.b.c` runs `a.b`'s
    `__init__`, which may re-export `a.b.c`; that is how packages work, not a cycle."""
    return {
        name: {t for t in targets if not name.startswith(t + ".")}
        for name, targets in graph.items()
    }


def test_no_import_cycles():
    assert _cycles(_without_own_packages(GRAPH)) == []


def test_cycle_detection_finds_a_planted_cycle():
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(planted) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_only_upstream(name):
    downstream = sorted(t for t in GRAPH[name] if _layer(t) > _layer(name))
    assert downstream == [], f"{name} (layer {_layer(name)}) imports downstream {downstream}"


def test_only_tracking_imports_mlflow():
    importers = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            modules = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            if any(m == "mlflow" or m.startswith("mlflow.") for m in modules):
                importers.append(name)
    assert importers and all(m.startswith("harness.tracking.") for m in importers), importers


def _long_functions(path: Path) -> list[str]:
    long = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            lines = node.end_lineno - first + 1
            if lines > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return long


def test_no_function_over_60_lines():
    long = [line for path in MODULES.values() for line in _long_functions(path)]
    assert long == []
