"""BentoML's own bento.yaml parser judges which models a bento references.

For any bytes in bento.yaml, retentiond's answer is either "unknown" or a set of model tags; a
known answer must never be incomplete. Checked two ways against ``BaseBentoInfo.from_yaml_file``
(what ``bentoml.get`` runs), in a process of its own:

- if BentoML loads the file, a known answer is exactly its ``all_models``;
- a known answer holds even after a repair: the same model lists in an otherwise valid bento.yaml
  (so a bento BentoML cannot load today for an unrelated reason, fixed tomorrow, is covered too).
"""

from __future__ import annotations

import base64
import json
import os
import select
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from daemon.metadata import read_metadata

pytestmark = pytest.mark.bentoml
REPO = Path(__file__).resolve().parents[1]
ANSWER_SECONDS = 60


class Judge:
    """``python -m tests.bentoml_judge references``: one bento.yaml per line in, one verdict per line out."""

    def __init__(self, home: Path) -> None:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("RETENTIOND_")}
        environment.update(BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="True", PYTHONPATH=str(REPO))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.bentoml_judge", "references", str(home)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment, cwd=REPO,
        )

    def verdict(self, data: bytes) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(base64.b64encode(data).decode() + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], ANSWER_SECONDS)
        assert ready, f"BentoML gave no verdict within {ANSWER_SECONDS} s"
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def judge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Judge]:
    running = Judge(tmp_path_factory.mktemp("bentoml-references") / "bentoml")
    try:
        yield running
    finally:
        running.close()


def ours(data: bytes, directory: Path) -> tuple[set[str] | None, str | None]:
    """retentiond's reading of ``data`` as ``bentos/svc/b1/bento.yaml``: (tags, None) or (None, why unknown)."""
    path = directory / "bento.yaml"
    path.write_bytes(data)
    fields, _, _ = read_metadata(str(path), "bento.yaml", "svc", "b1", len(data), regular_file=True)
    if fields.get("references_unknown") is not None:
        return None, fields["references_unknown"]
    return set(fields.get("model_references", ())), None


def repaired(document: dict[str, Any]) -> dict[str, Any]:
    """The same model lists in a bento.yaml that is otherwise valid: the fields BentoML requires, each service
    named, each model entry reduced to its tag (the other keys of an entry have defaults)."""
    fixed: dict[str, Any] = {"service": "service:Svc", "name": "svc", "version": "b1", "labels": {}}

    def entries(value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [{"tag": entry["tag"]} if isinstance(entry, dict) and "tag" in entry else entry for entry in value]

    if "models" in document:
        fixed["models"] = entries(document["models"])
    if "services" in document:
        services = document["services"]
        fixed["services"] = [
            {"name": "Svc", "service": "", **({"models": entries(s["models"])} if "models" in s else {})}
            if isinstance(s, dict) else s
            for s in services
        ] if isinstance(services, list) else services
    return fixed


VALID_TAG = st.from_regex(r"(iris|mnist|a[-._a-z0-9]{0,8}[a-z0-9]):[a-z0-9]([-._a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
ODD_TAG = st.sampled_from(["iris", "IRIS:V1", "iris:", ":v1", "iris:v1:v2", "iris:latest", " iris:v1", "iris:v1 ", "iris/v1", ""])
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(string.printable, max_size=8), VALID_TAG, ODD_TAG)
NESTED = st.recursive(
    SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["tag", "x", "models"]), inner, max_size=2),
    max_leaves=6,
)
ENTRY = st.one_of(
    st.fixed_dictionaries(
        {"tag": VALID_TAG},
        optional={"module": st.text(max_size=5), "creation_time": st.sampled_from(["2026-01-01T00:00:00+00:00", "soon", 5]),
                  "alias": st.none(), "registry": st.sampled_from(["bentoml", "huggingface", "other"])},
    ),
    st.fixed_dictionaries({"tag": st.one_of(ODD_TAG, NESTED)}),
    st.fixed_dictionaries({}, optional={"module": st.text(max_size=5)}),
    VALID_TAG, ODD_TAG, NESTED,
)
GOOD_ENTRY = st.fixed_dictionaries({"tag": VALID_TAG}, optional={"module": st.just(""), "alias": st.none()})
# Well-formed lists (what BentoML writes) as often as hostile ones.
MODELS = st.one_of(st.lists(GOOD_ENTRY, max_size=4), st.lists(st.one_of(GOOD_ENTRY, ENTRY), max_size=4), NESTED)
SERVICE = st.one_of(
    st.fixed_dictionaries({"name": st.just("Svc"), "service": st.just("")}, optional={"models": MODELS, "dependencies": st.just([])}),
    st.fixed_dictionaries({"name": st.just("Svc"), "service": st.just(""), "models": st.lists(GOOD_ENTRY, max_size=3)}),
    NESTED,
)


@st.composite
def bento_documents(draw: st.DrawFn) -> Any:
    document: dict[str, Any] = {
        "service": draw(st.sampled_from(["service:Svc"] * 3 + ["x"])),
        "name": draw(st.sampled_from(["svc"] * 6 + ["other", "SVC"])),
        "version": draw(st.sampled_from(["b1"] * 6 + ["b2"])),
        "bentoml_version": "1.4.39",
        "creation_time": draw(st.sampled_from(["2026-01-01T00:00:00+00:00"] * 4 + ["2026-01-01T00:00:00", "never"])),
        "labels": draw(st.one_of(st.just({}), st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["x", "1"]), max_size=2))),
    }
    if draw(st.booleans()):
        document["models"] = draw(MODELS)
    if draw(st.booleans()):
        document["services"] = draw(st.one_of(st.lists(SERVICE, max_size=3), st.lists(SERVICE, max_size=3), NESTED))
    if draw(st.integers(0, 3)) == 0:
        document.pop(draw(st.sampled_from(["service", "name", "labels", "creation_time"])))
    return document


def mangled(data: bytes, cut: int | None, junk: bytes) -> bytes:
    """A file read while BentoML was writing it (cut short), or appended to (the issue's printf)."""
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    return data + junk


JUNK = st.sampled_from([b""] * 10 + [b"\n\tbroken: [\n", b"\nmodels: []\n", b"\n- x\n", b"\xff", b"\nservices: {}\n"])


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    source=st.one_of(bento_documents(), bento_documents(), bento_documents(), NESTED, st.binary(max_size=200)),
    cut=st.one_of(st.none(), st.none(), st.none(), st.integers(0, 4000)),
    junk=JUNK,
)
def test_known_references_are_never_incomplete(source: Any, cut: int | None, junk: bytes, judge: Judge, tmp_path: Path) -> None:
    if isinstance(source, bytes):
        data = source
    else:
        data = mangled(yaml.safe_dump(source, sort_keys=False).encode(), cut, junk)
    tags, unknown = ours(data, tmp_path)
    verdict = judge.verdict(data)
    event(f"bentoml {'loads' if verdict['loaded'] else 'fails'}, retentiond {'knows' if tags is not None else 'flags unknown'}")
    if tags is None:
        assert unknown, "unknown references must say why"
        return
    if verdict["loaded"]:
        assert tags == set(verdict["tags"]), (data, verdict)
    document = yaml.safe_load(data)
    assert isinstance(document, dict), data
    fixed = judge.verdict(yaml.safe_dump(repaired(document), sort_keys=False).encode())
    assert fixed["loaded"], (data, fixed)
    assert tags == set(fixed["tags"]), (data, fixed)


@pytest.mark.parametrize(
    "text",
    [
        "name: svc\nversion: b1\nservice: s:S\nmodels:\n- iris:v1\n- iris:v2\n",
        "name: svc\nversion: b1\nservice: s:S\nservices:\n- name: S\n  service: ''\n  models:\n  - tag: IRIS:V1\n",
        "name: svc\nversion: b1\nservice: s:S\nservices:\n- name: S\n  service: ''\n  models:\n  - tag: iris\n",
        "name: svc\nversion: b1\nservice: s:S\nmodels: [{tag: 'iris:v1'}, {tag: 'iris:v2', registry: huggingface}]\n",
    ],
)
def test_what_bentoml_reads_differently_or_not_at_all_is_flagged_unknown(text: str, judge: Judge, tmp_path: Path) -> None:
    # BentoML maps a list of bare strings, lower-cases a tag, takes a tag without version: retentiond does not
    # guess, it flags the bento. (The last one is well formed and known: the control.)
    tags, unknown = ours(text.encode(), tmp_path)
    verdict = judge.verdict(text.encode())
    if text.startswith("name: svc\nversion: b1\nservice: s:S\nmodels: ["):
        assert tags == set(verdict["tags"]) == {"iris:v1", "iris:v2"}
    else:
        assert tags is None and unknown, verdict
