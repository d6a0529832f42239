"""The BentoML judge: a long-lived process with BentoML imported once that lists and resolves a store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.crash.injector import REPO, child_environment

JUDGE_MARK = "JUDGE "


def judge_main() -> None:
    """Answer each ``describe`` line on stdin with one JSON line: what BentoML lists and resolves."""
    import bentoml
    from bentoml_cli.cli import cli
    from click.testing import CliRunner

    runner = CliRunner()
    for line in sys.stdin:
        if line.strip() != "describe":
            continue
        try:
            answer = _describe(bentoml, cli, runner)
        except Exception as error:  # any exception is the verdict: BentoML cannot read this store
            answer = {"error": f"{type(error).__name__}: {error}"[:500]}
        sys.stdout.write(JUDGE_MARK + json.dumps(answer) + "\n")
        sys.stdout.flush()


def _describe(bentoml: Any, cli: Any, runner: Any) -> dict[str, Any]:
    home = Path(os.environ["BENTOML_HOME"])
    models = [str(model.tag) for model in bentoml.models.list()]
    bentos = [str(bento.tag) for bento in bentoml.list()]
    # get(name) writes `latest` itself when it is missing; only resolve names that have one.
    for name in {tag.split(":")[0] for tag in models if (home / "models" / tag.split(":")[0] / "latest").exists()}:
        bentoml.models.get(name)
    for name in {tag.split(":")[0] for tag in bentos if (home / "bentos" / tag.split(":")[0] / "latest").exists()}:
        bentoml.get(name)
    listings = {}
    for key, arguments in (("cli_models", ["models", "list", "-o", "json"]), ("cli_bentos", ["list", "-o", "json"])):
        outcome = runner.invoke(cli, arguments, catch_exceptions=True)
        if outcome.exit_code != 0:
            raise RuntimeError(f"bentoml {' '.join(arguments)} exited {outcome.exit_code}: {outcome.output[-300:]}")
        listings[key] = [entry["tag"] for entry in json.loads(outcome.output)]
    return {"models": models, "bentos": bentos, **listings}


class Judge:
    """A long-lived process with BentoML imported once, pointed at one fixed store path."""

    def __init__(self, home: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.crash", "judge"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=child_environment(home), cwd=REPO,
        )

    def describe(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("describe\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith(JUDGE_MARK):
                return json.loads(line[len(JUDGE_MARK):])
        raise RuntimeError(f"the BentoML judge died (exit {self.process.wait()})")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

