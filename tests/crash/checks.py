"""What a store must look like after a kill and after the recovery run: the crash-safety promises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.crash.store import KINDS, Pristine, _relative, file_manifest, version_dir, walk_paths


def read_audit(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Return the audit records and every non-empty line that is not a JSON object."""
    if not path.exists():
        return [], []
    records, unreadable = [], []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            unreadable.append(line.decode("utf-8", "replace")[:200])
            continue
        records.append(record) if isinstance(record, dict) else unreadable.append(line.decode()[:200])
    return records, unreadable


def _artifact_key(record: dict[str, Any]) -> tuple[str, str, str]:
    return (str(record.get("kind")), str(record.get("name")), str(record.get("version")))


def check_store(
    home: Path, pristine: Pristine, planned: set[tuple[str, str, str]], audit_path: Path, judged: dict[str, Any]
) -> list[str]:
    """Given a store after a kill or a run, return every way it breaks the crash-safety promises."""
    failures: list[str] = []
    present = {key for key in pristine.versions if version_dir(home, key).is_dir()}
    vanished = set(pristine.versions) - present
    for key in sorted(vanished - planned):
        failures.append(f"{_tag(key)} is gone but was not planned for deletion")
    records, _ = read_audit(audit_path)
    intended = {_artifact_key(r) for r in records if r.get("event") == "artifact.delete_intended"}
    for key in sorted(vanished - intended):
        failures.append(f"{_tag(key)} is gone without an audit intent")
    for key in sorted(present):
        manifest = file_manifest(version_dir(home, key))
        if manifest != pristine.versions[key].files:
            failures.append(f"{_tag(key)} is not whole: {_manifest_difference(pristine.versions[key].files, manifest)}")
    failures.extend(_check_latest(home, pristine, present))
    now_paths = set(walk_paths(home))
    inside_versions = {_relative(home, version_dir(home, key)) for key in pristine.versions}
    for path in sorted(now_paths - pristine.other_paths):
        if not any(path == v or path.startswith(v + "/") for v in inside_versions):
            failures.append(f"new entry in the store: {path}")
    emptied = {pristine.name_dir(kind, name) for kind, name, _ in pristine.versions
               if not any(key[:2] == (kind, name) for key in present)}
    for path in sorted(pristine.other_paths - now_paths):
        if path not in emptied and not any(path.startswith(name_dir + "/") for name_dir in emptied):
            failures.append(f"{path} (not a planned version) is gone")
    failures.extend(_check_judgement(judged, present))
    return failures



def _tag(key: tuple[str, str, str]) -> str:
    return f"{key[0]} {key[1]}:{key[2]}"


def _manifest_difference(expected: dict[str, tuple[int, str]], actual: dict[str, tuple[int, str]]) -> str:
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(path for path in set(expected) & set(actual) if expected[path] != actual[path])
    return f"missing {missing}, extra {extra}, changed {changed}"


def _check_latest(home: Path, pristine: Pristine, present: set[tuple[str, str, str]]) -> list[str]:
    # In a store BentoML made, `latest` names the newest version; the planner never deletes what
    # `latest` names, so no run of this scenario has to repair it: it must still name the newest.
    # A name whose save died before `latest` was written has none, and must not get one.
    failures = []
    names = {(kind, name) for kind, name, _ in present}
    for kind, name in sorted(names - pristine.with_latest):
        if (home / KINDS[kind][0] / name / "latest").exists():
            failures.append(f"{kind} {name}: has a latest file it did not have")
    for kind, name in sorted(names & pristine.with_latest):
        latest_path = home / KINDS[kind][0] / name / "latest"
        if latest_path.is_symlink() or not latest_path.is_file():
            failures.append(f"{kind} {name}: latest is missing or not a plain file")
            continue
        named = latest_path.read_text().strip()
        remaining = [key for key in present if key[:2] == (kind, name)]
        newest = max(remaining, key=lambda key: pristine.versions[key].created_at)
        if named != newest[2]:
            failures.append(f"{kind} {name}: latest names {named!r}, newest remaining is {newest[2]!r}")
    return failures


def _check_judgement(judged: dict[str, Any], present: set[tuple[str, str, str]]) -> list[str]:
    if "error" in judged:
        return [f"BentoML cannot read the store: {judged['error']}"]
    failures = []
    expected_models = {f"{name}:{version}" for kind, name, version in present if kind == "model"}
    expected_bentos = {f"{name}:{version}" for kind, name, version in present if kind == "bento"}
    for what, seen, expected in (
        ("bentoml.models.list()", judged["models"], expected_models),
        ("bentoml.list()", judged["bentos"], expected_bentos),
        ("`bentoml models list -o json`", judged["cli_models"], expected_models),
        ("`bentoml list -o json`", judged["cli_bentos"], expected_bentos),
    ):
        if set(seen) != expected:
            failures.append(f"{what} shows {sorted(set(seen) ^ expected)} differently from the store")
    return failures

