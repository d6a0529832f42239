"""BentoML's tag rule (REFERENCE.md §1): the ground floor that the scanner and the metadata reader share."""

from __future__ import annotations

import re

TAG_PATTERN = re.compile(r"^[a-z0-9]([-._a-z0-9]*[a-z0-9])?$")
TAG_MAX_LENGTH = 63


def is_valid_tag_part(text: str) -> bool:
    """Return True when ``text`` is a valid BentoML name or version."""
    return len(text) <= TAG_MAX_LENGTH and TAG_PATTERN.match(text) is not None


def is_full_tag(text: str) -> bool:
    """Return True when ``text`` is ``name:version`` with both parts valid (what bento.yaml writes per model)."""
    name, colon, version = text.partition(":")
    return bool(colon) and is_valid_tag_part(name) and is_valid_tag_part(version)
