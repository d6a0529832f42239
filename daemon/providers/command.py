"""Deployments run by the user's own commands: systemd units, docker containers, kubectl.

Each hook is a command line template such as ``systemctl stop {name}``. The template is split
with ``shlex`` first and only then is ``{name}`` replaced inside each argument, and the argv
runs without a shell. Together with DEPLOYMENT_NAME_PATTERN, checked before anything runs, a
deployment name can never become shell syntax, a second argument or an option.

The ``list`` hook prints JSON on stdout, either a list or ``{"items": [...]}`` of objects
``{"name", "status", "labels"?, "created_at"?, "updated_at"?, "id"?}``; times are ISO 8601 with
an offset, ``status`` is one of RUNNING_STATUSES or INACTIVE_STATUSES. Hooks must be idempotent,
as every provider call is: a timed-out hook is killed and run once more.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import timezone
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from daemon.provider_config import DEPLOYMENT_NAME_PATTERN, NAME_PLACEHOLDER, CommandHooks, split_template
from daemon.providers import INACTIVE_STATUSES, RUNNING_STATUSES, ProviderError, TransientProviderError
from daemon.providers.retry import with_retries
from policies.model import Deployment

# Inside CommandProvider, ``list`` names the method, not the builtin.
Argv = list[str]

KNOWN_STATUSES = RUNNING_STATUSES | INACTIVE_STATUSES
# Every attempt may last timeout_seconds while the store lock is held, so retry only once.
HOOK_ATTEMPTS = 2
KILL_WAIT_SECONDS = 5.0
STDERR_TAIL_LINES = 5
STDERR_TAIL_CHARS = 1000


class ListedDeployment(BaseModel):
    """One object printed by the ``list`` hook."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=DEPLOYMENT_NAME_PATTERN)
    status: str
    labels: dict[str, str] = Field(default_factory=dict)
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    id: str | int | None = None

    @field_validator("status")
    @classmethod
    def _check_status(cls, status: str) -> str:
        if status.lower() not in KNOWN_STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {', '.join(sorted(KNOWN_STATUSES))}")
        return status.lower()


def render_hook(template: str, name: str) -> list[str]:
    """Given a template and a deployment name, return the argv to run. Raise ProviderError if the name is unsafe."""
    if not re.fullmatch(DEPLOYMENT_NAME_PATTERN, name):
        raise ProviderError(f"refusing deployment name {name!r}: it must match {DEPLOYMENT_NAME_PATTERN}")
    return [argument.replace(NAME_PLACEHOLDER, name) for argument in split_template(template)]


class CommandProvider:
    """A provider whose every call runs one of the user's hook commands."""

    def __init__(self, *, name: str, hooks: CommandHooks, sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = name
        self.hooks = hooks
        self._sleep = sleep

    def list(self) -> list[Deployment]:
        """Run the list hook and return what it printed. Raise ProviderError if it fails or prints bad JSON."""
        stdout = self._run("list", split_template(self.hooks.list))
        return parse_listing(self.name, stdout)

    def terminate(self, name: str) -> None:
        """Run the terminate hook for ``name``. Raise ProviderError if it fails, TransientProviderError if it hangs."""
        self._run("terminate", render_hook(self.hooks.terminate, name))

    def restart(self, name: str) -> None:
        """Run the restart hook for ``name``. Raise ProviderError if it fails, TransientProviderError if it hangs."""
        self._run("restart", render_hook(self.hooks.restart, name))

    def delete(self, name: str) -> None:
        """Run the delete hook for ``name``. Raise ProviderError if there is none or it fails."""
        if self.hooks.delete is None:
            raise ProviderError(f"provider {self.name}: no delete hook is configured, so {name} cannot be deleted")
        self._run("delete", render_hook(self.hooks.delete, name))

    def _run(self, hook: str, argv: Argv) -> str:
        what = f"provider {self.name} {hook} hook"
        return with_retries(lambda: run_hook(what, argv, self.hooks), what, attempts=HOOK_ATTEMPTS, sleep=self._sleep)


def run_hook(what: str, argv: list[str], hooks: CommandHooks) -> str:
    """Given an argv, run it without a shell and return its stdout.

    Raise TransientProviderError if it outlives ``timeout_seconds``, ProviderError if it cannot
    start or exits non-zero (with the exit code and the last lines of its stderr).
    """
    try:
        # A session of its own, so that a timeout kills whatever the hook started, not just the hook.
        process = subprocess.Popen(
            argv,
            shell=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **hooks.env},
            start_new_session=True,
        )
    except OSError as error:
        raise ProviderError(f"{what} cannot run {argv[0]!r}: {error}") from error
    with process:
        try:
            stdout, stderr = process.communicate(timeout=hooks.timeout_seconds)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            # Something that left the session may still hold the pipes; do not wait for it forever.
            with suppress(subprocess.TimeoutExpired):
                process.communicate(timeout=KILL_WAIT_SECONDS)
            raise TransientProviderError(f"{what} timed out after {hooks.timeout_seconds:g}s: {shlex.join(argv)}") from None
    if process.returncode != 0:
        raise ProviderError(f"{what} exited with code {process.returncode}: {shlex.join(argv)}{stderr_tail(stderr)}")
    return stdout.decode("utf-8", errors="replace")


def stderr_tail(stderr: bytes) -> str:
    """Return the last lines of a hook's stderr, ready to append to a message, or '' if it said nothing."""
    lines = stderr.decode("utf-8", errors="replace").strip().splitlines()[-STDERR_TAIL_LINES:]
    if not lines:
        return ""
    return "; stderr: " + " | ".join(lines)[-STDERR_TAIL_CHARS:]


def parse_listing(provider: str, stdout: str) -> list[Deployment]:
    """Given what the list hook printed, return its deployments. Raise ProviderError naming the hook if it is malformed."""
    what = f"provider {provider} list hook"
    try:
        data: Any = json.loads(stdout)
    except ValueError as error:
        raise ProviderError(f"{what} printed malformed JSON: {error}") from error
    if isinstance(data, dict) and "items" in data:
        data = data["items"]
    if not isinstance(data, list):
        raise ProviderError(f"{what} printed JSON that is neither a list nor an object with items")
    deployments: list[Deployment] = []
    for index, item in enumerate(data):
        try:
            listed = ListedDeployment.model_validate(item)
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "item"
            raise ProviderError(f"{what} printed an invalid item #{index}: {field}: {first['msg']}") from None
        if any(known.name == listed.name for known in deployments):
            raise ProviderError(f"{what} printed deployment {listed.name!r} twice")
        deployments.append(to_deployment(provider, listed))
    return deployments


def to_deployment(provider: str, listed: ListedDeployment) -> Deployment:
    """Return the Deployment value for one listed object, its times in UTC."""
    return Deployment(
        provider=provider,
        name=listed.name,
        status=listed.status,
        labels=dict(listed.labels),
        created_at=listed.created_at.astimezone(timezone.utc) if listed.created_at else None,
        updated_at=listed.updated_at.astimezone(timezone.utc) if listed.updated_at else None,
        identity="" if listed.id is None else str(listed.id),
    )
