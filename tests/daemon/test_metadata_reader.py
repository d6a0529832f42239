"""The fast model.yaml reader against PyYAML: whenever it answers, the answer is PyYAML's.

Documents are generated the way BentoML writes them (``yaml.safe_dump``, keys in BentoML's
order) with hostile values, then some are mangled line by line; PyYAML is the judge.
"""

from __future__ import annotations

import string
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from daemon.metadata import parse_metadata
from daemon.metadata_reader import Unsupported, read_fields
from tests.fakestore import bento_yaml, model_yaml

LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Values YAML would type-convert or read as syntax if BentoML did not quote them.
TRICKY = [
    "yes", "no", "No", "on", "off", "true", "False", "y", "n", "null", "Null", "~", "", "123", "-1", "0o17", "0x1F",
    "1_000", "1.5", "1e3", ".inf", "-.nan", "2026-01-01", "2026-01-01 10:00:00", "12:30", "1:2:3", "=", "<<",
    "a: b", "a:b", "x:", "#x", "x #y", "x#y", "-x", "- x", "?x", ":x", "[x", "x]", "{}", "[]", "{a: 1}", "x,y",
    "'q'", '"dq"', "it's", " lead", "trail ", "a  b", "&anchor", "*alias", "!tag", "%x", "@x", "`x", "|", ">",
    "a\nb", "tab\there", "é", "---", "...", "a" * 90 + " b" * 10, "name", "labels", "iris:v1",
]
NAME = st.from_regex(r"[a-z0-9]([-._a-z0-9]{0,14}[a-z0-9])?", fullmatch=True)
TEXT = st.one_of(st.sampled_from(TRICKY), st.text(alphabet=string.printable, max_size=40), st.text(max_size=12))
SCALAR = st.one_of(TEXT, st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=False))
NESTED = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)
WHEN = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc))
CREATION_TIME = st.one_of(
    WHEN.map(lambda moment: moment.isoformat()), WHEN.map(lambda moment: moment.replace(tzinfo=None).isoformat()),
    WHEN, TEXT,
)


def needed_fields(document: dict[str, Any]) -> dict[str, Any]:
    """What the inventory reads from a document, taken from PyYAML's full result."""

    def tags(entries: Any) -> list[Any] | None:
        if not isinstance(entries, list):
            return None
        return [
            {"tag": entry.get("tag") if isinstance(entry.get("tag"), str) else None} if isinstance(entry, dict) else None
            for entry in entries
        ]

    fields: dict[str, Any] = {key: document[key] for key in ("name", "version", "creation_time", "labels") if key in document}
    if "models" in document:
        fields["models"] = tags(document["models"])
    if "services" in document:
        services = document["services"]
        fields["services"] = (
            [({"models": tags(service["models"])} if "models" in service else {}) if isinstance(service, dict) else None
             for service in services]
            if isinstance(services, list) else None
        )
    return fields


def judge(data: bytes) -> bool:
    """Hold the fast reader to PyYAML on ``data``; return True if the fast reader answered."""
    try:
        fast = read_fields(data)
    except Unsupported:
        return False
    try:
        full = yaml.load(data, Loader=LOADER)
    except Exception as error:  # any failure of PyYAML means the fast reader had to refuse too
        raise AssertionError(f"fast reader accepted what PyYAML rejects ({error!r}):\n{data.decode()}") from None
    assert isinstance(full, dict), data.decode()
    assert fast == needed_fields(full), data.decode()
    name, version = str(full.get("name")), str(full.get("version"))
    assert parse_metadata(fast, "model.yaml", name, version) == parse_metadata(full, "model.yaml", name, version)
    return True


@st.composite
def model_documents(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "name": draw(st.one_of(NAME, TEXT)), "version": draw(st.one_of(NAME, TEXT)), "module": draw(TEXT),
        "labels": draw(st.one_of(st.dictionaries(TEXT, TEXT, max_size=5), NESTED)), "options": draw(NESTED),
        "metadata": draw(st.dictionaries(TEXT, NESTED, max_size=4)),
        "context": {"framework_name": "", "framework_versions": {}, "bentoml_version": "1.4.39", "python_version": "3.11.7"},
        "signatures": draw(NESTED), "api_version": "v1", "creation_time": draw(CREATION_TIME),
    }


@st.composite
def bento_documents(draw: st.DrawFn) -> dict[str, Any]:
    reference = st.one_of(
        st.fixed_dictionaries({"tag": st.one_of(TEXT, NESTED), "module": TEXT, "creation_time": CREATION_TIME, "alias": st.none()}),
        st.fixed_dictionaries({"tag": st.sampled_from(["iris:v1", "iris:V1", "iris", "iris:v1:v2"])}),
        st.fixed_dictionaries({}, optional={"module": TEXT}),
        TEXT, NESTED,
    )
    return {
        "service": "service:Svc", "name": draw(NAME), "version": draw(NAME), "bentoml_version": "1.4.39",
        "creation_time": draw(CREATION_TIME), "labels": draw(st.dictionaries(TEXT, TEXT, max_size=4)),
        "models": draw(st.one_of(st.lists(reference, max_size=3), NESTED)),
        "services": draw(st.one_of(st.lists(st.fixed_dictionaries({"name": TEXT}, optional={"models": st.lists(reference, max_size=3)}),
                                            max_size=2), NESTED)),
        "envs": [], "schema": {}, "apis": [], "docker": {}, "python": {}, "conda": {},
    }


MANGLES = [
    lambda line: line + " # comment", lambda line: "# " + line, lambda line: " " + line, lambda line: line.lstrip(" "),
    lambda line: line.replace("'", '"'), lambda line: line.replace(": ", ": &a ", 1), lambda line: line.replace(": ", ":", 1),
    lambda line: "- " + line, lambda line: line + "\t", lambda line: line.replace(": ", ": |\n  ", 1), lambda line: "---\n" + line,
    lambda line: line + "\n" + line, lambda line: "", lambda line: line.replace("{}", "{a: 1}"), lambda line: line + "\r",
    lambda line: line.replace(": ", ": !!str ", 1), lambda line: line.replace(": '", ": '\n  ", 1), lambda line: line[:-1],
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=st.one_of(model_documents(), bento_documents()),
    mangles=st.lists(st.tuples(st.integers(0, 60), st.sampled_from(MANGLES)), max_size=2),
)
def test_fast_reader_agrees_with_pyyaml_or_falls_back(document: dict[str, Any], mangles: list[Any]) -> None:
    lines = yaml.safe_dump(document, sort_keys=False).split("\n")
    for position, mangle in mangles:
        index = position % len(lines)
        lines[index] = mangle(lines[index])
    answered = judge("\n".join(lines).encode("utf-8", "surrogatepass"))
    event("fast reader answered" if answered else "fell back to PyYAML")


@settings(max_examples=300, deadline=None)
@given(
    name=NAME, version=NAME, when=WHEN,
    labels=st.dictionaries(st.one_of(NAME, st.sampled_from(TRICKY[:40])), st.sampled_from(TRICKY[:40]) | NAME, max_size=6),
)
def test_what_bentoml_writes_is_read_fast_even_with_values_yaml_would_convert(
    name: str, version: str, when: datetime, labels: dict[str, str]
) -> None:
    # BentoML quotes yes/no/123/null/...; the fast reader must take those without falling back. (An empty key
    # is written as a complex "? ''" key, and a plain scalar may start with -?: - both are left to PyYAML.)
    plain_safe = {
        key: value for key, value in labels.items()
        if key and not key.startswith(("-", "?", ":")) and not value.startswith(("-", "?", ":"))
    }
    assert judge(model_yaml(name, version, when, plain_safe).encode())
    assert judge(bento_yaml(name, version, when, [f"iris:{version}", "other:v1"], plain_safe).encode())


@pytest.mark.parametrize(
    "text",
    [
        "name: iris\nversion: v1\nlabels: &l {a: b}\ncreation_time: '2026-01-01T00:00:00+00:00'\n",
        "name: iris\nversion: v1\nlabels:\n  a: |\n    multi\ncreation_time: '2026-01-01T00:00:00+00:00'\n",
        "name: iris\nversion: v1\nlabels: {a: b}\ncreation_time: '2026-01-01T00:00:00+00:00'\n",
        "name: iris\nversion: v1\nlabels:\n  a: 'one\n    two'\ncreation_time: '2026-01-01T00:00:00+00:00'\n",
        "name: iris\nname: other\nversion: v1\nlabels: {}\ncreation_time: '2026-01-01T00:00:00+00:00'\n",
        "name: iris\nversion: 1.0\nlabels: {}\ncreation_time: '2026-01-01T00:00:00+00:00'\n",
        "name: iris\nversion: v1\nlabels:\n  yes: 'x'\ncreation_time: 2026-01-01 00:00:00+00:00\n",
        "name: iris\nversion: v1\nlabels: {}\nmetadata:\n  when: 2026-13-45\ncreation_time: '2026-01-01T00:00:00+00:00'\n",
        "name: iris  # the model\nversion: v1\nlabels: {}\ncreation_time: '2026-01-01T00:00:00+00:00'\n",
        "name: iris\nversion: v1\nlabels: {}\ncreation_time: \"2026-01-01T00:00:00\\u002B00:00\"\n",
        "name: iris\n  version: v1\nlabels: {}\n",
        "---\nname: iris\n---\nname: other\n",
        "name: iris\nversion: v1\n<<: {labels: {a: b}}\ncreation_time: '2026-01-01T00:00:00+00:00'\n",
    ],
)
def test_unusual_yaml_falls_back_to_pyyaml_and_agrees(text: str) -> None:
    assert not judge(text.encode())


def test_fresh_collections_per_document() -> None:
    created = datetime(2026, 1, 1, tzinfo=timezone.utc)
    first = read_fields(model_yaml("iris", "v1", created).encode())
    first["labels"]["mutated"] = "yes"
    second = read_fields(model_yaml("iris", "v2", created + timedelta(hours=1)).encode())
    assert second["labels"] == {}


SHAPED = (
    "name: {name}\nversion: {version}\nmodule: ''\nlabels:\n  stage: prod\noptions: {{}}\nmetadata:\n  acc: 0.92\n"
    "context:\n  framework_name: ''\n  framework_versions: {{}}\napi_version: v1\ncreation_time: {created}\n"
)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.lists(st.one_of(st.sampled_from(TRICKY), TEXT, NAME, st.sampled_from(["'a''b'", '"dq"', "'x'y'", "'"])), min_size=3, max_size=3),
    document=model_documents(),
)
def test_a_file_shaped_like_one_read_before_still_agrees_with_pyyaml(raw: list[str], document: dict[str, Any]) -> None:
    # Files differing only in name, version and creation_time are answered from the shape remembered for the
    # first one; whatever stands in those three places, the answer must stay PyYAML's.
    assert judge(SHAPED.format(name="iris", version="v1", created="'2026-01-01T00:00:00+00:00'").encode())
    name, version, created = (value.replace("\n", " ") for value in raw)
    judge(SHAPED.format(name=name, version=version, created=created).encode("utf-8", "surrogatepass"))
    judge(yaml.safe_dump({**document, "name": "iris", "version": "v1"}, sort_keys=False).encode("utf-8", "surrogatepass"))
    judge(yaml.safe_dump(document, sort_keys=False).encode("utf-8", "surrogatepass"))
