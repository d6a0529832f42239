"""The policies package is the pure decision core: no I/O, processes, environment, logging, clock or randomness.

``impurities`` parses each module with ``ast`` and names every import of a module that reaches
the world, every use of a builtin that does (``open``, ``print``, ``__import__``), every read of
the environment and every read of the clock. The checker's own tests below hold it to each rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

POLICIES = Path(__file__).resolve().parents[2] / "policies"
# Matched on the first dotted part, so `os.path` is `os` and `timeit` is not `time`.
FORBIDDEN_MODULES = {
    # files, processes, the network, the interpreter and its threads and signals
    "os", "shutil", "pathlib", "io", "glob", "tempfile", "fileinput", "codecs", "mmap", "fcntl",
    "zipfile", "tarfile", "gzip", "bz2", "lzma", "shelve", "dbm", "sqlite3",
    "subprocess", "multiprocessing", "concurrent", "asyncio", "threading", "_thread", "signal", "sys", "ctypes",
    "socket", "ssl", "select", "selectors", "urllib", "http", "httpx", "requests", "psutil",
    "importlib", "builtins",
    # logging
    "logging", "structlog",
    # clocks and randomness: a decision must follow from its inputs (`now` is passed in)
    "time", "random", "secrets", "uuid",
    # the half of the project that touches the world
    "daemon",
}
FORBIDDEN_BUILTINS = {"open", "print", "input", "breakpoint", "exec", "eval", "compile", "__import__", "__builtins__", "exit", "quit"}
CLOCK_READS = {"now", "utcnow", "today"}
CLOCK_CLASSES = {"datetime", "date"}
ENVIRONMENT = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
SOURCES = sorted(POLICIES.rglob("*.py"))


def _imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []


def _dotted_end(node: ast.expr) -> str | None:
    """Return the last name of ``datetime`` or ``datetime.datetime``, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def impurities(tree: ast.AST) -> list[str]:
    """Given a parsed module, return a description of each forbidden import, builtin, environment or clock read."""
    found: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        found += [f"line {line}: imports {name}" for name in _imported_modules(node) if name.split(".")[0] in FORBIDDEN_MODULES]
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_BUILTINS:
            found.append(f"line {line}: uses the builtin {node.id}")
        if (isinstance(node, ast.Name) and node.id in ENVIRONMENT) or (isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT):
            found.append(f"line {line}: reads the environment")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_READS:
            found.append(f"line {line}: calls .{node.func.attr}()")
        elif isinstance(node, ast.Attribute) and node.attr in CLOCK_READS and _dotted_end(node.value) in CLOCK_CLASSES:
            found.append(f"line {line}: takes the clock {_dotted_end(node.value)}.{node.attr}")
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
        # files and the interpreter
        "import os",
        "import os.path",
        "from os import path",
        "from os import environ",
        "import pathlib",
        "from pathlib import Path",
        "import io",
        "import glob",
        "import tempfile",
        "import codecs",
        "import shutil",
        "import sys",
        "from sys import argv",
        "import importlib",
        "import builtins",
        "data = open('x').read()",
        "with open(path, 'rb') as handle: pass",
        "reader = open",
        "print(plan)",
        "answer = input()",
        "module = __import__('os')",
        "reader = getattr(__builtins__, 'open')",
        "eval(text)",
        "exec(text)",
        # processes, signals, threads, the network
        "import subprocess",
        "from subprocess import run",
        "import multiprocessing",
        "import threading",
        "from concurrent.futures import ThreadPoolExecutor",
        "import asyncio",
        "import signal",
        "import socket",
        "import urllib.request",
        "import http.client",
        "import psutil",
        # logging
        "from logging import getLogger",
        "import structlog as log",
        # randomness
        "import random",
        "from random import Random",
        "import secrets",
        "import uuid",
        # the environment
        "home = os.environ['HOME']",
        "home = os.getenv('HOME')",
        "home = getenv('HOME')",
        "home = environ.get('HOME')",
        # the clock
        "import time",
        "from time import monotonic",
        "x = datetime.now(timezone.utc)",
        "x = datetime.datetime.utcnow()",
        "x = date.today()",
        "x = datetime.date.today()",
        "clock = datetime.now",
        "clock = datetime.datetime.utcnow",
        "day = date.today",
        # the impure half of the project
        "from daemon.store import Store",
        "import daemon",
    ],
)
def test_checker_catches_impurities(source: str) -> None:
    assert impurities(ast.parse(source))


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import time, datetime",
        "from datetime import date, timedelta, timezone, tzinfo",
        "import timeit",
        "x = at.astimezone(z)",
        "x = datetime.fromisoformat(text)",
        "x = datetime.combine(day, time(7), zone)",
        "def decide(now): return now + timedelta(hours=1)",
        "x = policy.opens_at",
        "pattern = re.compile(r'\\d+')",
        "from zoneinfo import ZoneInfo",
        "from functools import cache",
        "from statistics import median",
        "import fnmatch",
        "from policies.model import Artifact",
        "from pydantic import BaseModel",
        "randomised = False",
        "printable = text.isprintable()",
    ],
)
def test_checker_allows_pure_code(source: str) -> None:
    assert not impurities(ast.parse(source))
