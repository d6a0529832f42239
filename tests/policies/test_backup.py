"""The backup gate of the pure core: a version is deleted only when the registry holds it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from policies import Artifact, DiskPolicy, DiskUsage, Inventory, RetentionPolicy, evaluate
from policies.backup import HELD, NOT_CONFIRMED, NOT_IN_CLOUD, BackupAnswer, BackupRequirement, unconfirmed, upload_answer

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
GIB = 1024**3


def artifact(name: str, version: str, days_old: float, **extra: Any) -> Artifact:
    created = NOW - timedelta(days=days_old)
    return Artifact(**{"kind": "model", "name": name, "version": version, "created_at": created,
                       "modified_at": created, "size_bytes": GIB, **extra})


def iris(count: int = 6) -> tuple[Artifact, ...]:
    return tuple(artifact("iris", f"v{index}", index + 1, is_latest=index == 0) for index in range(count))


def keep_two() -> RetentionPolicy:
    return RetentionPolicy(name="ci", keep_last=2)


class RecordingAnswers(Mapping[tuple[str, str, str], BackupAnswer]):
    """Answers that remember which versions were looked up: the gate must only ask about doomed ones."""

    def __init__(self, answers: dict[tuple[str, str, str], BackupAnswer]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __getitem__(self, key: tuple[str, str, str]) -> BackupAnswer:
        self.asked.append(key[2])
        return self.answers[key]

    def get(self, key: tuple[str, str, str], default: Any = None) -> Any:
        self.asked.append(key[2])
        return self.answers.get(key, default)

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        return iter(self.answers)

    def __len__(self) -> int:
        return len(self.answers)


def deleted(plan: Any) -> list[str]:
    return sorted(str(action.version) for action in plan.actions)


def kept_reasons(plan: Any, version: str) -> list[str]:
    return [reason for kept in plan.kept if kept.version == version for reason in kept.reasons]


def test_upload_status_maps_to_held_or_a_reason_naming_bentocloud() -> None:
    assert upload_answer("success") == HELD
    assert upload_answer(None).reason == "not in BentoCloud"
    assert upload_answer("uploading").reason == "upload to BentoCloud not finished (uploading)"
    assert upload_answer("pending").reason == "upload to BentoCloud not finished (pending)"
    assert upload_answer("failed").reason == "upload to BentoCloud failed"
    assert upload_answer("weird").status == "not_held"


def test_retention_deletes_only_held_versions_and_keeps_the_others_with_the_registrys_reason() -> None:
    answers = {
        ("model", "iris", "v2"): HELD,
        ("model", "iris", "v3"): upload_answer("uploading"),
        ("model", "iris", "v4"): upload_answer("failed"),
        ("model", "iris", "v5"): upload_answer(None),
    }
    plan = evaluate(Inventory(iris()), [keep_two()], NOW, backup=BackupRequirement(answers))

    assert deleted(plan) == ["v2"]
    assert kept_reasons(plan, "v3") == ["upload to BentoCloud not finished (uploading)"]
    assert kept_reasons(plan, "v4") == ["upload to BentoCloud failed"]
    assert kept_reasons(plan, "v5") == ["not in BentoCloud"]


def test_only_versions_the_policies_would_delete_are_looked_up() -> None:
    answers = RecordingAnswers({("model", "iris", f"v{index}"): HELD for index in range(6)})
    plan = evaluate(Inventory(iris()), [keep_two()], NOW, backup=BackupRequirement(answers))

    assert deleted(plan) == ["v2", "v3", "v4", "v5"]
    assert sorted(answers.asked) == ["v2", "v2", "v3", "v3", "v4", "v4", "v5", "v5"]  # blocking + push reason
    assert kept_reasons(plan, "v0") == ["latest", "last 2"]


def test_an_unasked_version_goes_through_in_a_finding_pass_and_is_kept_in_the_final_one() -> None:
    finding = evaluate(Inventory(iris()), [keep_two()], NOW, backup=BackupRequirement({}))
    final = evaluate(Inventory(iris()), [keep_two()], NOW, backup=BackupRequirement({}, unconfirmed("registry could not be asked")))

    assert deleted(finding) == ["v2", "v3", "v4", "v5"]
    assert deleted(final) == []
    assert kept_reasons(final, "v5") == ["not confirmed in BentoCloud (registry could not be asked)"]


def test_a_version_to_push_first_is_deleted_with_that_reason() -> None:
    answers = {("model", "iris", f"v{index}"): BackupAnswer("not_held", NOT_IN_CLOUD, push=True) for index in range(2, 6)}
    plan = evaluate(Inventory(iris()), [keep_two()], NOW, backup=BackupRequirement(answers))

    assert deleted(plan) == ["v2", "v3", "v4", "v5"]
    assert plan.actions[0].reasons == ("not kept by any rule", "push to BentoCloud first (not in BentoCloud)")


def test_the_every_version_refusal_still_applies_before_the_registry_is_consulted() -> None:
    items = tuple(artifact("iris", f"v{index}", index + 1) for index in range(3))
    answers = RecordingAnswers({("model", "iris", f"v{index}"): HELD for index in range(3)})
    plan = evaluate(Inventory(items), [RetentionPolicy(name="ci", keep_newer_than="1h")], NOW, backup=BackupRequirement(answers))

    assert deleted(plan) == [] and answers.asked == []
    assert all("refused" in reason for kept in plan.kept for reason in kept.reasons)


def test_disk_policy_skips_a_version_bentocloud_lacks_evicts_the_next_and_reports_the_block() -> None:
    items = iris(6)
    disk = DiskUsage(total_bytes=100 * GIB, used_bytes=87 * GIB)  # needs 2 GiB to get below 85%
    answers = {("model", "iris", "v5"): upload_answer(None), ("model", "iris", "v4"): unconfirmed("registry could not be asked")}
    policy = DiskPolicy(name="pressure", high_watermark="86%", low_watermark="85%")
    plan = evaluate(Inventory(items, disk=disk), [policy], NOW, backup=BackupRequirement(answers))

    assert deleted(plan) == ["v2", "v3"]
    report = plan.disk_reports[0]
    assert report.reached
    assert report.blocked_by == {NOT_IN_CLOUD: GIB, NOT_CONFIRMED: GIB}
    assert kept_reasons(plan, "v5") == ["not in BentoCloud"]
    assert kept_reasons(plan, "v4") == ["not confirmed in BentoCloud (registry could not be asked)"]


def test_disk_policy_that_cannot_reach_its_target_names_bentocloud_as_the_blocker() -> None:
    disk = DiskUsage(total_bytes=100 * GIB, used_bytes=90 * GIB)
    answers = {("model", "iris", f"v{index}"): upload_answer("uploading") for index in range(6)}
    plan = evaluate(Inventory(iris(6), disk=disk), [DiskPolicy(name="pressure", high_watermark="85%")], NOW,
                    backup=BackupRequirement(answers))

    assert deleted(plan) == []
    assert plan.disk_reports[0].blocked_by == {"latest": GIB, NOT_IN_CLOUD: 5 * GIB}
    assert any("not in BentoCloud 5.0 GiB" in warning for warning in plan.warnings)


def test_without_a_requirement_nothing_changes() -> None:
    assert deleted(evaluate(Inventory(iris()), [keep_two()], NOW)) == ["v2", "v3", "v4", "v5"]
