"""CommandProvider with real hook commands: a small Python script records how it was called."""

from __future__ import annotations

import json
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from daemon.provider_config import CommandHooks
from daemon.providers import ProviderError, TransientProviderError
from daemon.providers.command import CommandProvider, render_hook

PYTHON = shlex.quote(sys.executable)

HOOK_SCRIPT = """
import json, os, sys
with open(os.environ["HOOK_CALLS"], "a") as calls:
    calls.write(json.dumps({"argv": sys.argv[1:], "flavour": os.environ.get("HOOK_FLAVOUR")}) + "\\n")
if sys.argv[1] == "list":
    sys.stdout.write(open(os.environ["HOOK_LISTING"]).read())
"""


class Hooks:
    """A hook script under tmp_path, the file it records its calls in, and the listing it prints."""

    def __init__(self, tmp_path: Path) -> None:
        self.script = tmp_path / "hook.py"
        self.script.write_text(HOOK_SCRIPT)
        self.calls_path = tmp_path / "calls.jsonl"
        self.listing_path = tmp_path / "listing.json"
        self.listing_path.write_text("[]")

    def command(self, *arguments: str) -> str:
        return " ".join([PYTHON, shlex.quote(str(self.script)), *arguments])

    def provider(self, **overrides: Any) -> CommandProvider:
        settings: dict[str, Any] = {
            "list": self.command("list"),
            "terminate": self.command("terminate", "{name}"),
            "restart": self.command("restart", "--unit={name}.service"),
            "delete": self.command("delete", "deploy/{name}"),
            "env": {"HOOK_CALLS": str(self.calls_path), "HOOK_LISTING": str(self.listing_path), "HOOK_FLAVOUR": "vanilla"},
            **overrides,
        }
        return CommandProvider(name="units", hooks=CommandHooks(**settings), sleep=lambda seconds: None)

    def calls(self) -> list[list[str]]:
        if not self.calls_path.exists():
            return []
        return [json.loads(line)["argv"] for line in self.calls_path.read_text().splitlines()]


@pytest.fixture
def hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Hooks:
    # Anything an injection managed to run would show up here, in the working directory.
    monkeypatch.chdir(tmp_path)
    return Hooks(tmp_path)


def test_list_reads_a_plain_list_with_every_field(hooks: Hooks) -> None:
    hooks.listing_path.write_text(json.dumps([
        {"name": "web", "status": "Running", "labels": {"team": "ml"}, "created_at": "2026-11-20T09:00:00+01:00",
         "updated_at": "2026-11-21T10:00:00Z", "id": "c0ffee", "image": "ignored"},
        {"name": "batch.v2", "status": "terminated", "id": 42},
    ]))

    web, batch = hooks.provider().list()

    assert (web.provider, web.name, web.status, dict(web.labels), web.identity) == ("units", "web", "running", {"team": "ml"}, "c0ffee")
    assert web.created_at == datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc) and web.created_at.tzinfo == timezone.utc
    assert web.updated_at == datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc)
    assert (batch.name, batch.status, batch.identity, batch.created_at, dict(batch.labels)) == ("batch.v2", "terminated", "42", None, {})
    assert hooks.calls() == [["list"]]


def test_list_reads_an_object_with_items(hooks: Hooks) -> None:
    hooks.listing_path.write_text(json.dumps({"items": [{"name": "web", "status": "scaled-to-zero"}], "kind": "List"}))

    assert [(deployment.name, deployment.status) for deployment in hooks.provider().list()] == [("web", "scaled-to-zero")]


@pytest.mark.parametrize(
    ("printed", "complaint"),
    [
        ("not json at all", "malformed JSON"),
        ('[{"name": "web", "status": "running"}', "malformed JSON"),
        ('{"deployments": []}', "neither a list nor an object with items"),
        ('[{"name": "web"}]', "item #0: status"),
        ('[{"name": "web", "status": "active"}]', "unknown status 'active'"),
        ('[{"name": "web", "status": "running", "created_at": "2026-11-20T09:00:00"}]', "created_at"),
        ('[{"name": "$(touch pwned)", "status": "running"}]', "item #0: name"),
        ('[{"name": "web", "status": "running"}, {"name": "web", "status": "terminated"}]', "'web' twice"),
    ],
)
def test_a_malformed_listing_raises_naming_the_list_hook(hooks: Hooks, printed: str, complaint: str) -> None:
    hooks.listing_path.write_text(printed)

    with pytest.raises(ProviderError, match="provider units list hook") as raised:
        hooks.provider().list()
    assert complaint in str(raised.value)


def test_actions_substitute_the_name_inside_single_arguments(hooks: Hooks) -> None:
    provider = hooks.provider()

    provider.terminate("web-1")
    provider.restart("web-1")
    provider.delete("web-1")

    assert hooks.calls() == [["terminate", "web-1"], ["restart", "--unit=web-1.service"], ["delete", "deploy/web-1"]]
    flavours = {json.loads(line)["flavour"] for line in hooks.calls_path.read_text().splitlines()}
    assert flavours == {"vanilla"}, "hooks.env reaches the hook"


UNSAFE_NAMES = ["x; rm -rf /", "$(touch pwned)", "`touch pwned`", "web && touch pwned", "-rf", "../web", "a b", "", "x\ny"]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_unsafe_names_are_refused_before_anything_runs(hooks: Hooks, tmp_path: Path, name: str) -> None:
    provider = hooks.provider()

    for action in (provider.terminate, provider.restart, provider.delete):
        with pytest.raises(ProviderError, match="refusing deployment name"):
            action(name)

    assert hooks.calls() == []
    assert not (tmp_path / "pwned").exists()


def test_shell_syntax_in_a_template_is_passed_as_plain_arguments(hooks: Hooks, tmp_path: Path) -> None:
    # Were a shell involved, ';' would end the hook and touch would create the file.
    provider = hooks.provider(terminate=hooks.command("terminate", "{name}", ";", "touch", "pwned", "$(touch pwned2)", "'{name} x'"))

    provider.terminate("web")

    assert hooks.calls() == [["terminate", "web", ";", "touch", "pwned", "$(touch", "pwned2)", "web x"]]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert render_hook("kubectl scale 'deploy/{name}' --replicas=0", "web") == ["kubectl", "scale", "deploy/web", "--replicas=0"]


def test_a_hook_that_hangs_is_killed_with_what_it_started_and_is_transient(hooks: Hooks) -> None:
    forks_and_hangs = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    )
    provider = hooks.provider(terminate=f"{PYTHON} -c {shlex.quote(forks_and_hangs)} {{name}}", timeout_seconds=0.3)

    started = time.monotonic()
    with pytest.raises(TransientProviderError, match=r"provider units terminate hook timed out after 0.3s"):
        provider.terminate("web")

    # Two attempts; the grandchild holding the output pipe would block us for 30 s had it survived.
    assert time.monotonic() - started < 5


def test_a_timed_out_hook_is_retried_once(hooks: Hooks) -> None:
    sleeps_after_recording = f"{PYTHON} -c {shlex.quote(HOOK_SCRIPT + 'import time; time.sleep(30)')} terminate {{name}}"
    provider = hooks.provider(terminate=sleeps_after_recording, timeout_seconds=0.5)

    with pytest.raises(TransientProviderError):
        provider.terminate("web")

    assert hooks.calls() == [["terminate", "web"], ["terminate", "web"]]


def test_a_failing_hook_raises_with_its_exit_code_and_the_tail_of_stderr(hooks: Hooks) -> None:
    fails = "import sys; [print(f'line {n}', file=sys.stderr) for n in range(10)]; sys.exit(4)"
    provider = hooks.provider(restart=f"{PYTHON} -c {shlex.quote(fails)} {{name}}")

    with pytest.raises(ProviderError) as raised:
        provider.restart("web")

    message = str(raised.value)
    assert not isinstance(raised.value, TransientProviderError)
    assert "provider units restart hook exited with code 4" in message
    assert "line 5 | line 6 | line 7 | line 8 | line 9" in message and "line 4" not in message


def test_a_missing_program_and_a_missing_delete_hook_raise(hooks: Hooks, tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="cannot run"):
        hooks.provider(list=str(tmp_path / "no-such-program")).list()
    with pytest.raises(ProviderError, match="no delete hook"):
        hooks.provider(delete=None).delete("web")
    assert hooks.calls() == []


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"terminate": "systemctl stop retentiond-unit"}, "must contain {name}"),
        ({"restart": "systemctl start '{name}"}, "No closing quotation"),
        ({"list": "   "}, "empty"),
        ({"timeout_seconds": 0}, "greater than 0"),
        ({"shell": True}, "Extra inputs"),
    ],
)
def test_hooks_config_is_checked_when_loaded(overrides: dict[str, Any], complaint: str) -> None:
    settings = {"list": "units list", "terminate": "systemctl stop {name}", "restart": "systemctl start {name}", **overrides}

    with pytest.raises(ValidationError, match=complaint):
        CommandHooks(**settings)
