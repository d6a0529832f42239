"""Running the CLI against the stand-in BentoCloud registry (store.require_pushed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.registry_server import RegistryServer

TOKEN = "registry-token-0123456789"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def write_config(tmp_path: Path, home: Path, server: RegistryServer, policies: str, *, store: str = "", provider: str = "") -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\nhome = "{home}"\nrequire_pushed = "cloud"\n{store}'
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\naudit_log = "{tmp_path / "audit.jsonl"}"\n'
        f'[providers.cloud]\ntype = "bentocloud"\nendpoint = "{server.url}"\napi_token = "{TOKEN}"\ntimeout = "1s"\n{provider}'
        + policies
    )
    return config


def retentiond(config: Path, *arguments: str) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "daemon", *arguments, "--config", str(config)],
        capture_output=True, text=True, env=dict(os.environ), timeout=120,
    )
    return result.returncode, result.stdout, result.stderr


def run_json(config: Path, command: str) -> tuple[int, dict[str, Any], str]:
    code, stdout, stderr = retentiond(config, command, "--json")
    assert stdout, stderr
    return code, json.loads(stdout), stderr


def versions(home: Path, kind_dir: str, name: str) -> set[str]:
    return {entry.name for entry in (home / kind_dir / name).iterdir() if entry.is_dir()}


def kept_reasons(result: dict[str, Any], version: str) -> list[str]:
    return [reason for kept in result["kept"] if kept["version"] == version for reason in kept["reasons"]]


def deleted(result: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((action["kind"], action["version"]) for action in result["actions"] if action["action"] == "delete")
