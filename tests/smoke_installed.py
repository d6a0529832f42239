"""Smoke-test an installed ``retentiond`` (a wheel in a fresh virtualenv), as a user would run it.

    python tests/smoke_installed.py --retentiond /tmp/venv/bin/retentiond

Every command runs from a temporary directory outside the checkout, without PYTHONPATH, so only
the installed distribution can answer: a module missing from the wheel fails here. Checks:
``--version`` (matches pyproject.toml), that every module imports from the install, ``check-config``,
``plan`` (both option orders), ``status``, ``window``, and ``run`` reaching READY=1 on a notify socket
and exiting 0 with STOPPING=1 after SIGTERM. The demo store is built by ``python -m tests.fakestore``
with ``--store-python`` (default: this interpreter, which needs the test extras). Exits 1 naming each
failed check; 0 when all pass. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Imports every module of the installed packages; prints how many, which optional ones lack their extra,
# and where daemon came from. A module that needs an optional extra (OPTIONAL_MODULES) may fail only for
# want of a package that extra brings; anything else that does not import fails the check.
KUBERNETES_EXTRA = ("kubernetes", ["lightkube", "httpx2", "msgspec"])
OPTIONAL_MODULES = {
    "daemon.providers.kubernetes": KUBERNETES_EXTRA,
    "daemon.providers.kubernetes_credentials": KUBERNETES_EXTRA,
}
IMPORT_EVERY_MODULE = """
import importlib, pkgutil, sys, daemon, policies
optional = __OPTIONAL__
names = [info.name for package in (daemon, policies) for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
         if not info.name.endswith(".__main__")]  # that one runs the CLI
missing = []
for name in names:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        extra, packages = optional.get(name, (None, []))
        if extra is None or (error.name or "").split(".")[0] not in packages:
            raise
        missing.append(f"{name} needs retentiond[{extra}]")
print(len(names) + 2, daemon.__file__)
print("; ".join(missing))
""".replace("__OPTIONAL__", repr(OPTIONAL_MODULES))
COMMAND_TIMEOUT_SECONDS = 120
READY_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 60


class SmokeFailure(Exception):
    """One check did not hold; the message says what was run and what came back."""


class Smoke:
    """Runs the installed ``retentiond`` from ``workdir`` with a clean environment."""

    def __init__(self, retentiond: Path, workdir: Path, config: Path) -> None:
        self.retentiond = retentiond
        self.workdir = workdir
        self.config = config
        self.environment = {
            key: value for key, value in os.environ.items()
            if not key.startswith(("RETENTIOND_", "PYTHON", "NOTIFY_", "WATCHDOG_")) and key != "BENTOML_HOME"
        }
        self.environment["BENTOML_DO_NOT_TRACK"] = "True"

    def run(self, *arguments: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        """Run ``retentiond ARGUMENTS``; raise SmokeFailure unless it exits ``expect``."""
        result = subprocess.run(
            [str(self.retentiond), *arguments], cwd=self.workdir, env=self.environment,
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS,
        )
        if result.returncode != expect:
            raise SmokeFailure(
                f"`retentiond {' '.join(arguments)}` exited {result.returncode}, expected {expect}\n"
                f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-4000:]}"
            )
        return result

    def check_version(self) -> str:
        expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
        printed = self.run("--version").stdout.strip()
        if printed != f"retentiond {expected}" or not re.fullmatch(r"retentiond \d+\.\d+\.\d+\S*", printed):
            raise SmokeFailure(f"--version printed {printed!r}, expected 'retentiond {expected}'")
        return printed

    def check_every_module_imports(self) -> str:
        # Also catches a module that imports a test-only package (bentoml, hypothesis): the install has none.
        python = installed_python(self.retentiond)
        result = subprocess.run([str(python), "-c", IMPORT_EVERY_MODULE], cwd=self.workdir, env=self.environment,
                                capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
        if result.returncode != 0:
            raise SmokeFailure(f"a module of the install does not import:\n{result.stdout}{result.stderr[-4000:]}")
        first, _, missing = result.stdout.partition("\n")
        count, location = first.split(maxsplit=1)
        if Path(location.strip()).resolve().is_relative_to(REPO):
            raise SmokeFailure(f"daemon was imported from the checkout ({location.strip()}), not from the install")
        optional = f"; without extras: {missing.strip()}" if missing.strip() else ""
        return f"{count} modules, from {Path(location.strip()).parent}{optional}"

    def check_config(self) -> str:
        effective = json.loads(self.run("check-config", "--json", "--config", str(self.config)).stdout)
        if [policy["name"] for policy in effective["retention"]] != ["ci-models"]:
            raise SmokeFailure(f"check-config printed an unexpected config: {effective}")
        return "valid"

    def check_plan(self) -> str:
        planned = json.loads(self.run("plan", "--config", str(self.config), "--json").stdout)
        if not planned["actions"] or not planned["kept"]:
            raise SmokeFailure(f"plan on the demo store deletes or keeps nothing: totals {planned.get('totals')}")
        human = self.run("--config", str(self.config), "plan").stdout  # global option first, human output (rich)
        if "model-0000" not in human:
            raise SmokeFailure(f"`retentiond --config F plan` did not show the demo store:\n{human[-2000:]}")
        return f"{len(planned['actions'])} to delete, {len(planned['kept'])} kept"

    def check_missing_extra(self) -> str:
        """A provider whose extra is not installed is a config error that says what to install, not a traceback."""
        config = self.workdir / "kubernetes.toml"
        config.write_text(
            self.config.read_text()
            + '\n[providers.k8s]\ntype = "kubernetes"\n'
            + '[[offhours]]\nname = "nights"\nprovider = "k8s"\ndowntime = "always"\n'
        )
        result = self.run("plan", "--config", str(config), expect=78)
        if "retentiond[kubernetes]" not in result.stderr or "Traceback" in result.stderr:
            raise SmokeFailure(f"a kubernetes provider without its extra did not name the extra:\n{result.stderr[-2000:]}")
        return "exit 78, names retentiond[kubernetes]"

    def check_status(self) -> str:
        report = self.run("status", "--config", str(self.config), "--json").stdout
        json.loads(report)
        return "json"

    def check_window(self) -> str:
        output = self.run("window", "Mon-Fri 20:00-07:00 Europe/Berlin", "--at", "2025-03-31T18:30:00Z", "--json").stdout
        row = json.loads(output)["instants"][0]
        if row["active"] is not True:
            raise SmokeFailure(f"window: Monday 20:30 Berlin is not inside Mon-Fri 20:00-07:00: {row}")
        return f"next change {row['next_change']}"

    def check_run_ready(self) -> str:
        with tempfile.TemporaryDirectory(prefix="retentiond-notify-") as socket_dir:
            socket_path = Path(socket_dir) / "notify.sock"
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            listener.bind(str(socket_path))
            listener.settimeout(0.5)
            log_path = self.workdir / "run.log"
            with log_path.open("w") as log:
                process = subprocess.Popen(
                    [str(self.retentiond), "run", "--config", str(self.config)], cwd=self.workdir,
                    env={**self.environment, "NOTIFY_SOCKET": str(socket_path)}, stdout=log, stderr=subprocess.STDOUT,
                )
                try:
                    return self._ready_then_stop(process, listener, log_path)
                finally:
                    if process.poll() is None:
                        process.kill()
                        process.wait()
                    listener.close()

    def _ready_then_stop(self, process: subprocess.Popen[bytes], listener: socket.socket, log_path: Path) -> str:
        messages: list[str] = []
        started = time.monotonic()
        if not receive_until(listener, messages, "READY=1", lambda: process.poll() is not None, READY_TIMEOUT_SECONDS):
            raise SmokeFailure(f"`retentiond run` sent no READY=1 within {READY_TIMEOUT_SECONDS}s (exit {process.poll()}); "
                               f"messages {messages}\nlog:\n{log_path.read_text()[-4000:]}")
        ready_after = time.monotonic() - started
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise SmokeFailure(f"`retentiond run` did not exit within {STOP_TIMEOUT_SECONDS}s of SIGTERM") from None
        receive_until(listener, messages, "STOPPING=1", lambda: True, 0)
        if code != 0 or not any("STOPPING=1" in message for message in messages):
            raise SmokeFailure(f"`retentiond run` after SIGTERM: exit {code}, messages {messages}\n"
                               f"log:\n{log_path.read_text()[-4000:]}")
        return f"READY after {ready_after:.1f}s, exit 0 with STOPPING=1 after SIGTERM"


def receive_until(listener: socket.socket, messages: list[str], wanted: str, gone: Callable[[], bool], timeout: float) -> bool:
    """Append notify datagrams to ``messages`` until one holds ``wanted`` (True), or the sender is ``gone``
    and the socket is drained, or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            messages.append(listener.recv(4096).decode(errors="replace"))
        except TimeoutError:
            if gone() or time.monotonic() >= deadline:
                return False
            continue
        if wanted in messages[-1]:
            return True


def installed_python(script: Path) -> Path:
    """Given a console script that pip wrote, return the interpreter named on its ``#!`` line."""
    first_line = script.read_bytes().split(b"\n", 1)[0].decode(errors="replace")
    if not first_line.startswith("#!"):
        raise SmokeFailure(f"{script} has no #! line; is it a console script pip installed?")
    return Path(first_line[2:].strip().split()[0])


def build_demo(store_python: str, root: Path) -> Path:
    """Build the demo store with the checkout's ``tests.fakestore``; return its config."""
    result = subprocess.run([store_python, "-m", "tests.fakestore", str(root)], cwd=REPO,
                            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise SmokeFailure(f"building the demo store failed:\n{result.stdout}{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retentiond", required=True, type=Path, help="the installed console script to test")
    parser.add_argument("--store-python", default=sys.executable, help="interpreter that can run tests.fakestore")
    arguments = parser.parse_args(argv)
    retentiond = arguments.retentiond.absolute()
    with tempfile.TemporaryDirectory(prefix="retentiond-smoke-") as temporary:
        workdir = Path(temporary)
        if workdir.resolve().is_relative_to(REPO):
            print(f"FAIL: the work directory {workdir} is inside the checkout", file=sys.stderr)
            return 1
        try:
            config = build_demo(arguments.store_python, workdir / "demo")
        except SmokeFailure as failure:
            print(f"FAIL: demo store: {failure}", file=sys.stderr)
            return 1
        smoke = Smoke(retentiond, workdir, config)
        checks: list[tuple[str, Callable[[], str]]] = [
            ("--version", smoke.check_version),
            ("every module imports, from the install", smoke.check_every_module_imports),
            ("check-config", smoke.check_config),
            ("plan", smoke.check_plan),
            ("status", smoke.check_status),
            ("a provider without its extra", smoke.check_missing_extra),
            ("window", smoke.check_window),
            ("run reaches READY", smoke.check_run_ready),
        ]
        failed = 0
        for name, check in checks:
            try:
                print(f"ok: {name}: {check()}", flush=True)
            except (SmokeFailure, subprocess.TimeoutExpired, ValueError, KeyError) as failure:
                failed += 1
                print(f"FAIL: {name}: {failure}", file=sys.stderr)
    print(f"smoke test of {retentiond}: {len(checks) - failed} of {len(checks)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
