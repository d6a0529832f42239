"""store.require_pushed end to end: real `retentiond plan|apply|status` processes against the stand-in registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.audit import read_records
from tests.fakestore import add_bento, add_model, make_home
from tests.helpers.pushed import NOW, TOKEN, deleted, kept_reasons, retentiond, run_json, versions, write_config
from tests.registry_server import RegistryServer

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 78


@pytest.fixture
def server() -> Iterator[RegistryServer]:
    with RegistryServer(token=TOKEN, watchdog_seconds=120) as registry:
        yield registry


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


def six_iris(home: Path) -> None:
    for day in range(6):
        add_model(home, "iris", f"v{day}", NOW - timedelta(days=day + 1))


def test_plan_and_apply_delete_only_the_versions_bentocloud_holds(server: RegistryServer, home: Path, tmp_path: Path) -> None:
    six_iris(home)
    for day in range(4):
        add_bento(home, "svc", f"b{day}", NOW - timedelta(days=day + 1), [])
    server.hold("model", "iris:v2")
    server.hold("model", "iris:v3", status="uploading")
    server.hold("model", "iris:v4", status="failed")
    server.hold("bento", "svc:b2")
    server.hold("bento", "svc:b3", status="pending")
    config = write_config(tmp_path, home, server, '[[retention]]\nname = "ci"\nkeep_last = 2\n')

    code, planned, _ = run_json(config, "plan")
    assert code == EXIT_OK
    assert deleted(planned) == [("bento", "b2"), ("model", "v2")]
    assert kept_reasons(planned, "v3") == ["upload to BentoCloud not finished (uploading)"]
    assert kept_reasons(planned, "v4") == ["upload to BentoCloud failed"]
    assert kept_reasons(planned, "v5") == ["not in BentoCloud"]
    assert kept_reasons(planned, "b3") == ["upload to BentoCloud not finished (pending)"]
    assert planned["warnings"] == []
    # Only the versions the policy would delete were asked about, each once.
    assert sorted(server.registry_requests("model")) == [f"/api/v1/model_repositories/iris/models/v{n}" for n in (2, 3, 4, 5)]
    assert sorted(server.registry_requests("bento")) == [f"/api/v1/bento_repositories/svc/bentos/b{n}" for n in (2, 3)]

    code, applied, stderr = run_json(config, "apply")
    assert code == EXIT_OK, stderr
    assert sorted((a["version"], a["outcome"]) for a in applied["actions"]) == [("b2", "ok"), ("v2", "ok")]
    assert versions(home, "models", "iris") == {"v0", "v1", "v3", "v4", "v5"}
    assert versions(home, "bentos", "svc") == {"b0", "b1", "b3"}
    assert {(r["version"], r["event"]) for r in read_records(tmp_path / "audit.jsonl") if r["event"] == "artifact.deleted"} == {
        ("v2", "artifact.deleted"), ("b2", "artifact.deleted"),
    }


def test_held_answers_are_cached_and_missing_ones_asked_again(server: RegistryServer, home: Path, tmp_path: Path) -> None:
    six_iris(home)
    for day in (2, 3, 4):
        server.hold("model", f"iris:v{day}")
    config = write_config(tmp_path, home, server, '[[retention]]\nname = "ci"\nkeep_last = 2\n',
                          store='require_pushed_cache = "10m"\n')
    assert retentiond(config, "plan", "--json")[0] == EXIT_OK
    asked_first = len(server.registry_requests("model"))
    assert retentiond(config, "plan", "--json")[0] == EXIT_OK

    assert asked_first == 4
    assert server.registry_requests("model")[asked_first:] == ["/api/v1/model_repositories/iris/models/v5"]


def test_the_registry_is_asked_about_candidates_only_not_the_whole_store(server: RegistryServer, home: Path, tmp_path: Path) -> None:
    for index in range(80):
        add_model(home, "iris", f"v{index:02d}", NOW - timedelta(hours=index + 2))
    config = write_config(tmp_path, home, server, '[[retention]]\nname = "ci"\nkeep_last = 77\n')
    code, planned, _ = run_json(config, "plan")

    assert code == EXIT_OK
    assert [kept_reasons(planned, v) for v in ("v77", "v78", "v79")] == [["not in BentoCloud"]] * 3
    assert len(server.registry_requests("model")) == 3


@pytest.mark.parametrize("fault", ["500", "timeout", "401"])
def test_a_registry_that_cannot_be_asked_keeps_every_version_and_the_run_goes_on(
    server: RegistryServer, home: Path, tmp_path: Path, fault: str
) -> None:
    six_iris(home)
    for day in range(2, 6):
        server.hold("model", f"iris:v{day}")
    server.add_deployment("staging-iris")
    if fault == "500":
        server.fail_registry(500)
    elif fault == "timeout":
        server.fail_registry(None, delay_seconds=3)
    token = "wrong-token" if fault == "401" else TOKEN
    config = write_config(tmp_path, home, server, (
        '[[retention]]\nname = "ci"\nkeep_last = 2\n'
        '[[offhours]]\nname = "always"\nprovider = "deploys"\ndowntime = "always"\ngrace_period = "0s"\n'
    ), provider=f'[providers.deploys]\ntype = "bentocloud"\nendpoint = "{server.url}"\napi_token = "{TOKEN}"\n')
    config.write_text(config.read_text().replace(f'api_token = "{TOKEN}"\ntimeout', f'api_token = "{token}"\ntimeout', 1))

    code, planned, stderr = run_json(config, "plan")
    assert deleted(planned) == []
    assert {tuple(kept_reasons(planned, f"v{day}")) for day in range(2, 6)} == {
        ("not confirmed in BentoCloud (registry could not be asked)",)
    }
    registry_warnings = [w for w in planned["warnings"] if "registry could not be asked" in w]
    assert len(registry_warnings) == 1 and "4 version(s) that would be deleted are kept" in registry_warnings[0]
    assert stderr.count("registry.unavailable") == 1
    assert [(a["action"], a["name"]) for a in planned["actions"]] == [("terminate", "staging-iris")]

    code, applied, stderr = run_json(config, "apply")
    assert code == EXIT_FAILED
    assert [(a["action"], a["name"], a["outcome"]) for a in applied["actions"]] == [("terminate", "staging-iris", "ok")]
    assert server.deployment("staging-iris")["status"] == "terminated"
    assert versions(home, "models", "iris") == {f"v{day}" for day in range(6)}
    assert not [r for r in read_records(tmp_path / "audit.jsonl") if r["event"].startswith("artifact.")]
    # One question, retried; not one per version.
    assert {path.rsplit("/", 1)[1] for path in server.registry_requests("model")} == {"v5"}
    assert TOKEN not in stderr and "wrong-token" not in stderr


def test_disk_policy_evicts_only_held_versions_and_reports_what_bentocloud_lacks(
    server: RegistryServer, home: Path, tmp_path: Path
) -> None:
    for day in range(8):
        add_model(home, "iris", f"v{day}", NOW - timedelta(days=day + 1), file_bytes=1000)
    size = sum(path.stat().st_size for path in (home / "models" / "iris" / "v0").iterdir())
    # Over budget by four versions; the four oldest are not held, so the disk policy has to look further.
    budget = size * 4
    for day in (0, 1, 2, 3):
        server.hold("model", f"iris:v{day}")
    server.hold("model", "iris:v7", status="uploading")
    config = write_config(tmp_path, home, server, f'[[disk]]\nname = "budget"\nmax_store_size = "{budget}B"\n')

    code, planned, _ = run_json(config, "plan")
    assert code == EXIT_OK
    assert deleted(planned) == [("model", "v1"), ("model", "v2"), ("model", "v3")]
    assert kept_reasons(planned, "v7") == ["upload to BentoCloud not finished (uploading)"]
    assert kept_reasons(planned, "v4") == ["not in BentoCloud"]
    blocked = [w for w in planned["warnings"] if w.startswith("disk policy budget")]
    assert len(blocked) == 1 and "not in BentoCloud" in blocked[0] and "latest" in blocked[0]

    code, applied, stderr = run_json(config, "apply")
    assert code == EXIT_OK, stderr
    assert versions(home, "models", "iris") == {"v0", "v4", "v5", "v6", "v7"}

    code, stdout, _ = retentiond(config, "status", "--json")
    backup = json.loads(stdout)["backup"]
    assert (backup["source"], backup["held_back_versions"], backup["by_reason"]) == ("last run", 4, {"not in BentoCloud": 4})
    assert backup["held_back_bytes"] == 4 * size
    code, stdout, _ = retentiond(config, "status")
    assert "backup: require_pushed cloud (last run" in stdout and "4 versions" in stdout


@pytest.mark.parametrize(("store", "provider", "message"), [
    ('require_pushed = "nowhere"\n', "", "'nowhere' names no provider"),
    ('require_pushed = "local"\n', '[providers.local]\ntype = "process"\n', "provider of type 'process'"),
    ('push_before_delete = true\n', "", "push_before_delete needs require_pushed"),
    ('collect_incomplete_after = "10m"\n', "", "at least 1h"),
])
def test_backup_settings_that_cannot_work_are_config_errors(
    home: Path, tmp_path: Path, store: str, provider: str, message: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\nhome = "{home}"\n{store}[daemon]\nstate_dir = "{tmp_path}"\n{provider}')
    code, _, stderr = retentiond(config, "check-config")

    assert code == EXIT_CONFIG
    assert message in stderr and "Traceback" not in stderr


def test_example_config_documents_the_backup_and_collection_keys() -> None:
    from daemon.config import load_config

    store = load_config(str(Path(__file__).resolve().parents[2] / "config.example.toml")).settings.store
    assert (store.require_pushed, str(store.require_pushed_cache), store.push_before_delete) == ("cloud", "10m", False)
    assert (str(store.push_timeout), str(store.collect_incomplete_after)) == ("1h", "7d")
