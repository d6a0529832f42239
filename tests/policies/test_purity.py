"""The policies package is the pure decision core: no I/O, logging or clock reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

POLICIES = Path(__file__).resolve().parents[2] / "policies"
FORBIDDEN_MODULES = {"os", "shutil", "psutil", "structlog", "logging", "time", "daemon"}
FORBIDDEN_CALLS = {"now", "utcnow", "today"}
SOURCES = sorted(POLICIES.rglob("*.py"))


def impurities(tree: ast.AST) -> list[str]:
    """Given a parsed module, return a description of each forbidden import or clock read."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            modules = []
        found += [
            f"line {node.lineno}: imports {name}" for name in modules if name.split(".")[0] in FORBIDDEN_MODULES
        ]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FORBIDDEN_CALLS:
            found.append(f"line {node.lineno}: calls .{node.func.attr}()")
    return found


def test_policies_package_has_sources() -> None:
    assert POLICIES / "__init__.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(POLICIES)))
def test_module_is_pure(path: Path) -> None:
    problems = impurities(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    assert not problems, f"{path.relative_to(POLICIES.parent)} is not pure: {problems}"


@pytest.mark.parametrize(
    "source",
    [
        "import os",
        "import os.path",
        "from os import path",
        "from logging import getLogger",
        "import time",
        "from daemon.store import Store",
        "import structlog as log",
        "x = datetime.now(timezone.utc)",
        "x = datetime.datetime.utcnow()",
        "x = date.today()",
    ],
)
def test_checker_catches_impurities(source: str) -> None:
    assert impurities(ast.parse(source))


@pytest.mark.parametrize("source", ["from datetime import time, datetime", "import timeit", "x = at.astimezone(z)"])
def test_checker_allows_pure_code(source: str) -> None:
    assert not impurities(ast.parse(source))
