from __future__ import annotations

import os

import pytest

os.environ["BENTOML_DO_NOT_TRACK"] = "True"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own configuration out of every test."""
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
