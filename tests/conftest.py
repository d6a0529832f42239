from __future__ import annotations

import os

import pytest

os.environ["BENTOML_DO_NOT_TRACK"] = "True"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the developer's own configuration out of every test, and the tests out of the machine's own state:
    a config without ``state_dir``/``audit_log`` uses systemd's directory variables, pointed here at scratch
    directories (else the suite, run as root, wrote into /var/lib/retentiond and /var/log/retentiond, which a
    retentiond service on the same machine uses)."""
    machine = tmp_path_factory.mktemp("machine")
    monkeypatch.setenv("STATE_DIRECTORY", str(machine / "state"))
    monkeypatch.setenv("LOGS_DIRECTORY", str(machine / "log"))
    for key in list(os.environ):
        if key.startswith("RETENTIOND_") or key.startswith("BENTO_CLOUD_"):
            monkeypatch.delenv(key, raising=False)
    for key in ("BENTOML_HOME", "NOTIFY_SOCKET", "WATCHDOG_USEC", "BENTOML_CLOUD_CONTEXT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")


@pytest.fixture(autouse=True)
def mutants_act_in_a_scratch_directory(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under mutmut (tests/mutation/README.md), run each test in its own tmp_path: a mutant that turns a path
    into None (``os.scandir(None)`` lists the working directory) then removes scratch files, not mutants/."""
    if "MUTANT_UNDER_TEST" in os.environ:
        monkeypatch.chdir(request.getfixturevalue("tmp_path"))
