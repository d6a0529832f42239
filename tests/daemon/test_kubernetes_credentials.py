"""Where the kubernetes provider's credentials come from: kubeconfig key, $KUBECONFIG, ~/.kube/config, service account."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from daemon.providers import ProviderError
from daemon.providers.kubernetes_credentials import load_kube_config


def kubeconfig(path: Path, server: str, token: str = "t", contexts: tuple[str, ...] = ("main",)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "current-context": contexts[0],
        "clusters": [{"name": name, "cluster": {"server": f"{server}/{name}"}} for name in contexts],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "u"}} for name in contexts],
    }))
    return path


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    home = tmp_path / "home"
    return {
        "key": kubeconfig(tmp_path / "key.yaml", "https://key"),
        "env": kubeconfig(tmp_path / "env.yaml", "https://env"),
        "home": kubeconfig(home / ".kube" / "config", "https://home"),
        "home_dir": home,
    }


def server_of(path: str, environ: dict[str, str], context: str = "", service_account: Path = Path("/nonexistent")) -> str:
    single, _ = load_kube_config(path, context, environ, service_account)
    return single.cluster.server


def test_the_kubeconfig_key_wins_then_kubeconfig_env_then_home(places: dict[str, Path], tmp_path: Path) -> None:
    environ = {"HOME": str(places["home_dir"]), "KUBECONFIG": f"{tmp_path / 'missing.yaml'}{os.pathsep}{places['env']}"}
    assert server_of(str(places["key"]), environ) == "https://key/main"
    assert server_of("", environ) == "https://env/main"  # the first file of $KUBECONFIG that exists
    assert server_of("", {"HOME": str(places["home_dir"])}) == "https://home/main"


def test_a_named_context_is_used_and_an_unknown_one_is_an_error(tmp_path: Path) -> None:
    path = str(kubeconfig(tmp_path / "two.yaml", "https://api", contexts=("dev", "ci")))
    assert server_of(path, {}) == "https://api/dev"
    assert server_of(path, {}, context="ci") == "https://api/ci"
    with pytest.raises(ProviderError, match="context 'prod'"):
        server_of(path, {}, context="prod")


def test_in_a_pod_without_files_the_service_account_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    (account / "namespace").write_text("retentiond")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    environ = {"HOME": str(tmp_path / "nohome"), "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    single, source = load_kube_config("", "", environ, account)
    assert (single.cluster.server, single.namespace, source) == ("https://10.0.0.1:443", "retentiond", "the in-cluster service account")


def test_no_credentials_anywhere_names_every_place_looked_at(tmp_path: Path) -> None:
    with pytest.raises(ProviderError) as failure:
        load_kube_config("", "", {"HOME": str(tmp_path)}, tmp_path / "serviceaccount")
    message = str(failure.value)
    assert "$KUBECONFIG is unset" in message and str(tmp_path / ".kube" / "config") in message and "service account" in message


def test_a_broken_kubeconfig_is_an_error_that_does_not_quote_its_secrets(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("users: [{name: u, user: {token: very-secret-token}\n")
    with pytest.raises(ProviderError) as failure:
        load_kube_config(str(broken), "", {})
    assert "not valid YAML" in str(failure.value) and "very-secret-token" not in str(failure.value)
    not_a_kubeconfig = tmp_path / "list.yaml"
    not_a_kubeconfig.write_text("- a\n- b\n")
    with pytest.raises(ProviderError, match="is not a kubeconfig"):
        load_kube_config(str(not_a_kubeconfig), "", {})
