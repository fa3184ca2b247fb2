"""The package layering: shared vocabulary at the bottom, environments free of learning code,
models free of planning code — checked on every import statement and in a fresh interpreter;
and no import cycle between hplan modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

HPLAN = Path(__file__).resolve().parent.parent / "hplan"

FORBIDDEN: dict[str, tuple[str, ...]] = {
    # package: the hplan modules (prefixes) its code must never import
    "vocabulary": ("hplan",),
    "envs": ("hplan.config", "hplan.models", "hplan.planning", "hplan.data", "hplan.runner", "hplan.stress"),
    "models": ("hplan.planning", "hplan.runner", "hplan.stress", "hplan.studies"),
    "planning": ("hplan.envs", "hplan.models", "hplan.data", "hplan.runner", "hplan.stress", "hplan.studies"),
    "metrics": ("hplan.diagnostics", "hplan.models", "hplan.planning", "hplan.runner", "hplan.stress", "hplan.studies"),
    "diagnostics": ("hplan.models", "hplan.planning", "hplan.runner", "hplan.stress", "hplan.studies"),
}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_what_sits_above_it(package: str) -> None:
    for path in sorted((HPLAN / package).rglob("*.py")):
        bad = [n for n in _imports(path) for module in FORBIDDEN[package] if n == module or n.startswith(module + ".")]
        assert not bad, f"{path.relative_to(HPLAN.parent)} imports {bad}"


def test_building_an_env_loads_no_learning_config() -> None:
    code = ("import sys, hplan.envs.factory\n"
            "bad = [m for m in ('hplan.config', 'hplan.models.config', 'hplan.planning.config', 'torch') if m in sys.modules]\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(HPLAN.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _hplan_imports(path: Path, modules: set[str]) -> tuple[set[str], set[str]]:
    """The hplan modules ``path`` imports ``(when it is imported, only when a function runs)``.

    Module level: every ``import`` / ``from … import`` outside function bodies — ``if TYPE_CHECKING:``
    blocks included, since a cycle hidden there is still a cycle. ``from package import name``
    counts as importing ``package.name`` when that is a module, else ``package``."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: tuple[set[str], set[str]] = (set(), set())

    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            into = found[in_function]
            if isinstance(child, ast.Import):
                into.update(owner(alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[:len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                into.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else owner(base)
                            for alias in child.names)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    me = _module_name(path)
    top, lazy = ({name for name in names if name.startswith("hplan") and name != me} for names in found)
    return top, lazy


def _import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``a → … → a``) per strongly connected group of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    cycles = []
    for group in groups:  # a path back to the group's first module, inside the group
        start = min(group)
        paths = {start: [start]}
        todo = [start]
        while todo:
            node = todo.pop(0)
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    cycles.append(paths[node] + [start])
                    todo = []
                    break
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    todo.append(nxt)
    return cycles


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_import_cycles_are_found_and_hplan_has_none() -> None:
    """No cycle among module-level imports, and none hidden behind an import inside a function:
    a function that imports a module which (through module-level imports) imports the function's
    own module is a cycle put off until the call."""
    assert _import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _import_cycles({"a": {"b"}, "b": set()}) == []
    paths = sorted(HPLAN.rglob("*.py"))
    modules = {_module_name(path) for path in paths}
    imports = {_module_name(path): _hplan_imports(path, modules) for path in paths}
    graph = {name: top for name, (top, _) in imports.items()}
    assert "hplan.stress.summary" in graph["hplan.stress.runner"]  # the walk sees the imports
    cycles = _import_cycles(graph)
    assert not cycles, "module-level import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)
    hidden = sorted(f"{name} -> {target} (inside a function) -> ... -> {name}"
                    for name, (_, lazy) in imports.items() for target in lazy if name in _reachable(graph, target))
    assert not hidden, "import cycles hidden in functions: " + "; ".join(hidden)
