"""Delete only what the backup registry holds: its answers about candidate versions, as plain values.

With ``store.require_pushed`` the daemon asks BentoCloud about each version the policies would
delete and hands the answers in as a ``BackupRequirement``; whether an answer lets a deletion go
ahead is decided here. A version is deleted only when the registry holds that exact version
(``upload_status`` "success"), or, with ``push_before_delete``, when it will be pushed first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from policies.model import Artifact

BackupStatus = Literal["held", "not_held", "unknown"]

# Every reason names BentoCloud; disk reports group them by these prefixes.
NOT_IN_CLOUD = "not in BentoCloud"
UPLOAD_PREFIX = "upload to BentoCloud"
NOT_CONFIRMED = "not confirmed in BentoCloud"
PUSH_FIRST = "push to BentoCloud first"


@dataclass(frozen=True, slots=True)
class BackupAnswer:
    """What the registry said about one version.

    ``reason`` says why it is not held (empty when it is). ``push`` marks a version that is not
    held but will be pushed before it is deleted (``push_before_delete``, with room for its archive).
    """

    status: BackupStatus
    reason: str = ""
    push: bool = False


HELD = BackupAnswer("held")


def upload_answer(upload_status: str | None) -> BackupAnswer:
    """Given a registry version's ``upload_status`` (None: the registry has no such version), return the answer."""
    if upload_status is None:
        return BackupAnswer("not_held", NOT_IN_CLOUD)
    if upload_status == "success":
        return HELD
    if upload_status in ("pending", "uploading"):
        return BackupAnswer("not_held", f"{UPLOAD_PREFIX} not finished ({upload_status})")
    if upload_status == "failed":
        return BackupAnswer("not_held", f"{UPLOAD_PREFIX} failed")
    return BackupAnswer("not_held", f"{UPLOAD_PREFIX} in an unknown state ({upload_status!r})")


def unconfirmed(why: str) -> BackupAnswer:
    """Return the answer for a version the registry could not be asked about (``why``: a few words)."""
    return BackupAnswer("unknown", f"{NOT_CONFIRMED} ({why})")


def backup_group(reason: str) -> str | None:
    """Given a protection reason, return its group for disk reports if it is a backup reason, else None."""
    if reason.startswith((NOT_IN_CLOUD, UPLOAD_PREFIX)):
        return NOT_IN_CLOUD
    if reason.startswith(NOT_CONFIRMED):
        return NOT_CONFIRMED
    return None


@dataclass(frozen=True)
class BackupRequirement:
    """Every deletion of a model or bento version needs a copy in the registry.

    ``answers`` holds what the registry said, by (kind, name, version). ``unasked`` is the answer
    assumed for a version that is not in ``answers``: None lets it through, which is how a first
    pass finds the versions worth asking about; the final pass gives an ``unknown`` answer.
    """

    answers: Mapping[tuple[str, str, str], BackupAnswer]
    unasked: BackupAnswer | None = None

    def answer(self, artifact: Artifact) -> BackupAnswer | None:
        """Return the answer for ``artifact`` (None: not asked, and let through)."""
        return self.answers.get((artifact.kind, artifact.name, artifact.version), self.unasked)

    def blocking(self, artifact: Artifact) -> str | None:
        """Given a version the policies would delete, return why it must be kept instead, or None."""
        answer = self.answer(artifact)
        if answer is None or answer.status == "held" or answer.push:
            return None
        return answer.reason

    def push_reason(self, artifact: Artifact) -> str | None:
        """Given a version that will be deleted, return the reason to add when it is pushed first, or None."""
        answer = self.answer(artifact)
        if answer is None or answer.status == "held" or not answer.push:
            return None
        return f"{PUSH_FIRST} ({answer.reason})"
