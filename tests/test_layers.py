"""The layering rules of docs/ARCHITECTURE.md, checked on the imports of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in sorted(imports(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(ROOT)} imports {name}")
    return out


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("trainers", ("ray", "sweeps", "analysis", "optuna")),  # a trial runs in a plain process
        ("analysis", ("ray", "sweeps", "trainers", "torch", "optuna")),  # results only
        (
            "trainers/models",
            (
                "trainers.trial",
                "trainers.distributed",
                "trainers.optim",
                "trainers.losses",
                "trainers.experiments",
                "trainers.data",
            ),
        ),
    ],
)
def test_a_layer_imports_nothing_above_it(package, forbidden):
    assert offenders(package, forbidden) == []


def test_the_check_sees_a_function_level_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from ray import tune\n")
    assert imports(bad) == {"ray"}
