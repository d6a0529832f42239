"""The effective configuration as TOML, the form a person writes it in: what ``check-config`` prints.

Given the JSON-ready dump of the settings (secrets already redacted), return TOML text that
``tomllib`` reads back to the same values. A key that is not set (None) is left out, as TOML has no
null; every string is a basic string whose control and format characters are ``\\u`` escapes, so a
value cannot steer the terminal and the text stays valid TOML.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def to_toml(settings: Mapping[str, Any]) -> str:
    """Given ``Settings.model_dump(mode="json")``, return it as TOML: a section per table, ``[[...]]`` per policy."""
    lines: list[str] = []
    _table(lines, (), settings)
    return "\n".join(lines).strip("\n") + "\n"


def _table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any], array: bool = False) -> None:
    # A provider's type first: it says what the other keys mean.
    table = dict(sorted(table.items(), key=lambda item: item[0] != "type"))
    of_tables = bool(path) and bool(table) and all(isinstance(value, Mapping) for value in table.values())
    simple = {
        key: value for key, value in table.items() if value is not None and not of_tables and not _is_section(path, value)
    }
    if path and (simple or array or not table):
        lines.append("")
        header = ".".join(_key(part) for part in path)
        lines.append(f"[[{header}]]" if array else f"[{header}]")
    lines.extend(f"{_key(key)} = {_value(value)}" for key, value in simple.items())
    for key, value in table.items():
        if value is None or key in simple:
            continue
        if isinstance(value, Mapping):
            _table(lines, (*path, key), value)
        else:
            for item in value:
                _table(lines, (*path, key), item, array=True)


def _is_section(path: tuple[str, ...], value: Any) -> bool:
    """A table of its own: a top-level table, a table of tables (providers), a non-empty list of tables (policies)."""
    if isinstance(value, Mapping):
        return not path or any(isinstance(item, Mapping) for item in value.values())
    return isinstance(value, list) and bool(value) and all(isinstance(item, Mapping) for item in value)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(key)} = {_value(item)}" for key, item in value.items()) + " }" if value else "{}"
    return "[" + ", ".join(_value(item) for item in value if item is not None) + "]"


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(text: str) -> str:
    # JSON's escapes (\", \\, \n, \u001b) are TOML basic-string escapes too; the rest of what could steer a
    # terminal (DEL, C1, bidi overrides) is escaped the same way.
    quoted = json.dumps(text, ensure_ascii=False)
    if quoted.isprintable():
        return quoted
    return "".join(_escape(character) if unicodedata.category(character) in _ESCAPED_CATEGORIES else character
                   for character in quoted)


def _escape(character: str) -> str:
    code = ord(character)
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
