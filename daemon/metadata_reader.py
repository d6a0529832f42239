"""Read the fields retentiond needs from a model.yaml/bento.yaml without a full YAML parser.

BentoML writes these files with ``yaml.dump``: block style, one scalar per line,
strings that would read as something else quoted. ``read_fields`` parses exactly
that shape (block mappings and sequences, plain scalars, single-quoted scalars,
double-quoted ones without escapes, ``{}`` and ``[]``) and returns only
``name``, ``version``, ``labels``, ``creation_time``, ``models`` and the
``models`` of each of ``services``. Anything else (comments, anchors, tags,
flow collections with content, multi-line or escaped scalars, tabs, non-ASCII,
duplicate keys, scalars whose type PyYAML would decide differently) raises
``Unsupported``, and the caller reads the file with full PyYAML instead. The
answer is therefore always the one PyYAML would give; a property test holds
both to that.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

# The resolver table of the loader the fallback uses: the fast path must type scalars exactly as it would.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
_SAFE_TYPED = {
    "tag:yaml.org,2002:null": None,
    "tag:yaml.org,2002:bool": None,
    "tag:yaml.org,2002:int": re.compile(r"[-+]?(?:0|[1-9][0-9]*)"),
    "tag:yaml.org,2002:float": re.compile(r"[-+]?[0-9]+\.[0-9]+"),
}
_PRINTABLE = re.compile(r"[\x20-\x7e\n]*")
_SINGLE_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_DOUBLE_QUOTED = re.compile(r'"([^"\\]*)"')
_QUOTED_PREFIX = re.compile(r"'(?:[^']|'')*'|\"[^\"\\]*\"")
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
_LONGEST_SIMPLE_KEY = 1000  # PyYAML refuses implicit keys longer than 1024 characters
_ITEM, _ENTRY, _SCALAR = 0, 1, 2
_NO_VALUE = object()


class Unsupported(Exception):
    """The text is outside the shape this reader understands; read it with PyYAML."""


class Typed:
    """A plain scalar that PyYAML would turn into null, a bool or a number: never a string."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def read_fields(data: bytes) -> dict[str, Any]:
    """Given the bytes of a BentoML metadata file, return its needed fields as PyYAML would read them.

    Raise Unsupported if the file is not in the simple shape BentoML writes.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise Unsupported("not ASCII") from None
    if _PRINTABLE.fullmatch(text) is None:
        raise Unsupported("control characters or tabs")
    tokens = _tokenize(text)
    if not tokens or tokens[0][1] != _ENTRY:
        raise Unsupported("not a block mapping")
    parser = _Parser(tokens)
    document = parser.node(tokens[0][0])
    if parser.position != len(tokens):
        raise Unsupported("text after the document")
    return project(document)


def _tokenize(text: str) -> list[tuple[int, int, Any, Any]]:
    """Split lines into (indent, kind, key, value) tokens; ``- key: v`` gives an item and an entry."""
    tokens: list[tuple[int, int, Any, Any]] = []
    for line in text.split("\n"):
        if not line:
            continue
        if line[-1] == " ":
            raise Unsupported("trailing space")
        content = line.lstrip(" ")
        indent = len(line) - len(content)
        while content[:2] == "- " or content == "-":
            tokens.append((indent, _ITEM, None, None))
            if content == "-":
                break
            rest = content[2:]
            content = rest.lstrip(" ")
            indent += 2 + len(rest) - len(content)
        else:
            tokens.append(_content_token(indent, content))
    return tokens


def _content_token(indent: int, content: str) -> tuple[int, int, Any, Any]:
    if content[0] in "'\"":
        quoted = _QUOTED_PREFIX.match(content)
        if quoted is None:
            raise Unsupported("unterminated or escaped quoted scalar")
        key_text, after = content[: quoted.end()], content[quoted.end() :]
        if not after:
            return (indent, _SCALAR, None, _scalar(content))
    else:
        cut = content.find(": ")
        if cut >= 0:
            key_text, after = content[:cut], content[cut:]
        elif content[-1] == ":":
            key_text, after = content[:-1], ":"
        else:
            return (indent, _SCALAR, None, _scalar(content))
    if len(key_text) > _LONGEST_SIMPLE_KEY:
        raise Unsupported("key too long")
    key = _scalar(key_text)
    if isinstance(key, dict | list):
        raise Unsupported("collection as a key")
    if after == ":":
        return (indent, _ENTRY, key, _NO_VALUE)
    if after[:2] != ": ":
        raise Unsupported("no space after a quoted key")
    return (indent, _ENTRY, key, _scalar(after[2:].lstrip(" ")))


def _scalar(raw: str) -> Any:
    """Return a scalar's value: a str, ``{}``, ``[]`` or a ``Typed``. Raise Unsupported for anything else."""
    if not raw or raw[-1] == " ":
        raise Unsupported("empty key or space before a colon")
    first = raw[0]
    if first == "'":
        match = _SINGLE_QUOTED.fullmatch(raw)
        if match is None:
            raise Unsupported("single-quoted scalar with trailing text")
        return match.group(1).replace("''", "'")
    if first == '"':
        match = _DOUBLE_QUOTED.fullmatch(raw)
        if match is None:
            raise Unsupported("double-quoted scalar with escapes or trailing text")
        return match.group(1)
    if raw == "{}":
        return {}
    if raw == "[]":
        return []
    if first in _INDICATORS or ": " in raw or " #" in raw or raw[-1] == ":":
        raise Unsupported(f"plain scalar {raw!r}")
    for tag, pattern in _LOADER.yaml_implicit_resolvers.get(first, ()):
        if pattern.match(raw):
            if tag not in _SAFE_TYPED:
                raise Unsupported(f"{tag} scalar {raw!r}")
            shape = _SAFE_TYPED[tag]
            if shape is not None and shape.fullmatch(raw) is None:
                raise Unsupported(f"unusual number {raw!r}")
            return Typed(raw)
    return raw


class _Parser:
    """Recursive descent over tokens; every token must sit where YAML would read it the same way."""

    def __init__(self, tokens: list[tuple[int, int, Any, Any]]) -> None:
        self.tokens = tokens
        self.position = 0

    def _peek(self) -> tuple[int, int, Any, Any] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def node(self, indent: int) -> Any:
        token = self.tokens[self.position]
        if token[1] == _ITEM:
            return self._sequence(indent)
        if token[1] == _ENTRY:
            return self._mapping(indent)
        self.position += 1
        following = self._peek()
        if following is not None and following[0] >= indent:
            raise Unsupported("multi-line scalar")
        return token[3]

    def _value_below(self, indent: int) -> Any:
        following = self._peek()
        if following is not None and following[0] > indent:
            return self.node(following[0])
        return None

    def _mapping(self, indent: int) -> dict[Any, Any]:
        mapping: dict[Any, Any] = {}
        while (token := self._peek()) is not None and token[0] >= indent:
            if token[0] > indent or token[1] != _ENTRY:
                raise Unsupported("misplaced line in a mapping")
            key = token[2]
            if isinstance(key, Typed) or key in mapping:
                raise Unsupported("typed or duplicate key")
            self.position += 1
            if token[3] is not _NO_VALUE:
                mapping[key] = token[3]
                continue
            following = self._peek()
            if following is not None and following[0] == indent and following[1] == _ITEM:
                mapping[key] = self._sequence(indent)
            else:
                mapping[key] = self._value_below(indent)
        return mapping

    def _sequence(self, indent: int) -> list[Any]:
        sequence: list[Any] = []
        while (token := self._peek()) is not None and token[0] == indent and token[1] == _ITEM:
            self.position += 1
            sequence.append(self._value_below(indent))
        return sequence


def project(document: Any) -> dict[str, Any]:
    """Keep the fields the inventory reads, with values PyYAML would give. Raise Unsupported otherwise."""
    if not isinstance(document, dict):
        raise Unsupported("not a mapping")
    fields: dict[str, Any] = {}
    for key in ("name", "version", "creation_time"):
        if key in document:
            fields[key] = _exact(document[key])
    if "labels" in document:
        labels = document["labels"]
        fields["labels"] = {_exact(k): _exact(v) for k, v in labels.items()} if isinstance(labels, dict) else _exact(labels)
    if "models" in document:
        fields["models"] = _references(document["models"])
    if "services" in document:
        services = document["services"]
        fields["services"] = (
            [{"models": _references(s.get("models"))} if isinstance(s, dict) else None for s in services]
            if isinstance(services, list)
            else None
        )
    return fields


def _exact(value: Any) -> Any:
    if value is None or isinstance(value, str) or value == {} or value == []:
        return value
    raise Unsupported("a needed field is not a plain string")


def _references(entries: Any) -> list[Any] | None:
    """A bento's model list: only the string tags matter (a number or a null is no tag)."""
    if not isinstance(entries, list):
        return None
    tags: list[Any] = []
    for entry in entries:
        tag = entry.get("tag") if isinstance(entry, dict) else entry
        tags.append(tag if isinstance(tag, str) else None)
    return tags
