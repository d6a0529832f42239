"""Environment overrides of one policy of the file: ``RETENTIOND_RETENTION__0__KEEP_LAST=9``.

pydantic-settings turns ``RETENTIOND_<SECTION>__<KEY>`` into nested tables, which cannot address the
N-th ``[[retention]]`` of the file: it builds ``{"retention": {"0": {...}}}``, which is not a list, and
the whole override fails as "not a valid tuple". Such variables are applied here instead, to the file's
own tables and before validation (so a bad value is an error naming ``retention[0].keep_last``), and are
hidden from pydantic-settings. They change a policy the file has; they cannot add one.

A value is read as TOML when the key takes it that way (``9``, ``true``, ``["a*", "b*"]``,
``{ stage = "prod" }``), else as the text it is (``2d``, ``0 * * * *``, a name like ``123``).
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from daemon.errors import ConfigError
from policies.spec import DiskPolicy, OffhoursPolicy, RetentionPolicy

POLICY_SECTIONS: dict[str, type[BaseModel]] = {"retention": RetentionPolicy, "disk": DiskPolicy, "offhours": OffhoursPolicy}
_INDEXED = re.compile(r"^RETENTIOND_(RETENTION|DISK|OFFHOURS)__(\d+)__(.+)$", re.IGNORECASE)


def is_indexed_override(name: str) -> bool:
    """Return True for a variable that overrides a key of one policy table (``RETENTIOND_DISK__1__MIN_AGE``)."""
    return _INDEXED.match(name) is not None


def apply_indexed_overrides(data: Mapping[str, Any], environ: Mapping[str, str], where: str) -> dict[str, Any]:
    """Given the file's tables, return them with every indexed override of ``environ`` applied.

    Raise ConfigError naming the variable if it addresses a policy the file (``where``) does not have, or
    if the whole section is overridden too (``RETENTIOND_RETENTION`` as JSON would silently replace it).
    """
    overrides = sorted((name, value) for name, value in environ.items() if is_indexed_override(name))
    if not overrides:
        return dict(data)
    result = copy.deepcopy(dict(data))
    problems = []
    for name, raw in overrides:
        match = _INDEXED.match(name)
        assert match is not None
        section, index, keys = match.group(1).lower(), int(match.group(2)), match.group(3).lower().split("__")
        tables = result.get(section)
        whole = [key for key in environ if key.upper() == f"RETENTIOND_{section.upper()}"]
        if whole:
            problems.append(f"  {name}: {whole[0]} replaces every [[{section}]] table, so this override would be lost; "
                            "give one or the other")
        elif not isinstance(tables, list) or index >= len(tables) or not isinstance(tables[index], dict):
            count = len(tables) if isinstance(tables, list) else 0
            problems.append(
                f"  {name}: {where} has {count} [[{section}]] table{'' if count == 1 else 's'} (numbered from 0), so "
                f"there is no {section}[{index}] to override; add the policy to the file, or give every one as JSON: "
                f"RETENTIOND_{section.upper()}='[{{\"name\": \"...\", ...}}]'"
            )
        else:
            _set(tables[index], keys, raw, POLICY_SECTIONS[section])
    if problems:
        raise ConfigError("invalid config in the environment:\n" + "\n".join(problems))
    return result


def _set(table: dict[str, Any], keys: list[str], raw: str, model: type[BaseModel]) -> None:
    for key in keys[:-1]:
        inner = table.get(key)
        if not isinstance(inner, dict):
            inner = table[key] = {}
        table = inner
    table[keys[-1]] = _typed(raw, model, keys[0]) if len(keys) == 1 else raw


def _typed(raw: str, model: type[BaseModel], key: str) -> Any:
    """Return ``raw`` read as a TOML value if the field ``key`` of ``model`` takes that value, else ``raw`` itself."""
    field = model.model_fields.get(key)
    if field is None or field.annotation is None:
        return raw  # an unknown key: validation names it
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw
    if isinstance(value, str):
        return value
    try:
        # The type only, not its limits: keep_last = -1 is an int, and validation then says what is wrong with it.
        TypeAdapter(field.annotation).validate_python(value)
    except (ValidationError, TypeError, ValueError):
        return raw
    return value
