"""Collect what killed saves leave behind (``store.collect_incomplete_after``).

A version directory without its model.yaml / bento.yaml is a save that was killed: BentoML
writes the metadata file into it, and its own listing fails while such a directory exists. An
entry of BentoML's tmp directory (``$BENTOML_HOME/tmp``: push archives, builds) that nobody has
touched for as long is a leftover too. Either is deleted once it, and everything in it, has been
unchanged for the configured span; younger ones may still be being written and are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal

from policies.durations import Duration
from policies.model import Action, format_instant

LeftoverKind = Literal["model", "bento", "tmp"]
# The "policy" of these actions: the setting that asks for them.
COLLECT_POLICY = "store.collect_incomplete_after"


@dataclass(frozen=True, slots=True)
class Leftover:
    """A version directory without its metadata file (``kind`` model/bento), or an entry of BentoML's tmp
    directory (``kind`` "tmp", ``name`` the entry's name, no version). ``modified_at`` is the newest
    mtime of the entry and of everything inside it."""

    kind: LeftoverKind
    name: str
    version: str | None
    modified_at: datetime
    size_bytes: int
    missing: str = ""

    def describe(self) -> str:
        if self.kind == "tmp":
            return f"leftover in BentoML's tmp directory, last modified {format_instant(self.modified_at)}"
        return f"incomplete save: no {self.missing}, last modified {format_instant(self.modified_at)}"


def collect_leftovers(
    leftovers: Sequence[Leftover], after: Duration, now: datetime, zone: tzinfo
) -> tuple[list[Action], list[tuple[Leftover, str]]]:
    """Given leftovers, return deletions of those unchanged for ``after``, and each younger one with why it stays."""
    cutoff = after.before(now, zone)
    actions: list[Action] = []
    younger: list[tuple[Leftover, str]] = []
    for leftover in leftovers:
        if leftover.modified_at <= cutoff:
            actions.append(Action(
                "delete", leftover.kind, leftover.name, leftover.version, COLLECT_POLICY, (leftover.describe(),),
                leftover.size_bytes,
            ))
        else:
            due = format_instant(after.after(leftover.modified_at, zone))
            younger.append((leftover, f"{leftover.describe()}; collected if still unchanged at {due} ({after})"))
    return actions, younger
