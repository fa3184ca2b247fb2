"""The package layering: shared vocabulary at the bottom, environments free of learning code,
models free of planning code — checked on every import statement and in a fresh interpreter."""

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
