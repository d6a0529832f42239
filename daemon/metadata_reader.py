"""Read the fields retentiond needs from a model.yaml/bento.yaml without a full YAML parser.

BentoML writes these files with ``yaml.dump``: block style, one scalar per line,
strings that would read as something else quoted. ``read_fields`` parses exactly
that shape (block mappings and sequences, ``- `` items, plain scalars,
single-quoted scalars, double-quoted ones without escapes, ``{}`` and ``[]``)
and returns only ``name``, ``version``, ``labels``, ``creation_time``,
``models`` and the ``models`` of each of ``services``. Anything else
(comments, anchors, tags, flow collections with content, multi-line or escaped
scalars, tabs, non-ASCII, duplicate keys, timestamps, a needed field that PyYAML
would not read as a string) raises ``Unsupported``, and the caller reads the
file with full PyYAML instead. So the answer is always the one PyYAML would
give; a property test holds both to that.

Files of one store differ mostly in three top-level lines (``name``, ``version``,
``creation_time``): the result for a file is remembered by its text with those
values masked, and a file of the same shape only has its three values checked.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

# The resolver table of the loader the fallback uses: plain scalars must be typed exactly as it would.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Typed plain scalars PyYAML builds without fail; for numbers only the obvious spellings (no 0x, 1_000, .inf).
_SAFE_TYPED: dict[str, re.Pattern[str] | None] = {
    "tag:yaml.org,2002:null": None,
    "tag:yaml.org,2002:bool": None,
    "tag:yaml.org,2002:int": re.compile(r"[-+]?(?:0|[1-9][0-9]*)"),
    "tag:yaml.org,2002:float": re.compile(r"[-+]?[0-9]+\.[0-9]+"),
}
_PRINTABLE = re.compile(r"[\x20-\x7e\n]*")
_QUOTED = r"""'(?:[^'\n]|'')*'|"[^"\\\n]*\""""
# A plain scalar: no indicator first, no ": " or " #" inside, no trailing space or colon.
_PLAIN = r"""[^-?:,\[\]{}#&*!|>'"%@`\s](?:[^\s:]|:(?=\S)| +(?=[^\s#]))*"""
_VALUE = rf"""{_QUOTED}|{_PLAIN}|\{{\}}|\[\]"""
# Per line: indent, "- " items, then "key:", "key: value", a lone scalar, or anything else (unsupported).
_LINE = re.compile(rf"""( *)((?:- )*)(?:({_QUOTED}|{_PLAIN}):(?: +({_VALUE}))?|({_VALUE}))""")
_LONGEST_SIMPLE_KEY = 1000  # PyYAML refuses implicit keys longer than 1024 characters
# Most lines (module, options, context, ...) repeat from file to file: tokenize each distinct line once.
_MEMO_LIMIT = 8192
_ITEM, _ENTRY, _SCALAR = 0, 1, 2
_NO_VALUE = object()
_EMPTY_MAPPING = object()
_EMPTY_SEQUENCE = object()
Token = tuple[int, int, Any, Any]
_line_memo: dict[str, tuple[Token, ...]] = {}
# Top-level lines whose value is a string go straight into the result: they do not change how the rest
# of the file parses. "\0" cannot occur in an accepted file, so a masked text is never a real one.
_VARYING_LINES = tuple((key, f"\n{key}: ") for key in ("name", "version", "creation_time"))
_MASK = "\0"
_STRING_VALUE = re.compile(rf"{_QUOTED}|{_PLAIN}")
_SIMPLE_PLAIN = re.compile(r"[A-Za-z0-9_][-.A-Za-z0-9_]*")  # a plain scalar, checked much faster
_SHAPE_MEMO_LIMIT = 1024
_shape_memo: dict[str, dict[str, Any]] = {}


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
    masked = _masked(text)
    if masked is None:
        return _read_document(text)
    shape, values = masked
    template = _shape_memo.get(shape)
    if template is not None:
        fields = template.copy()
        for key, value in template.items():
            if type(value) is dict or type(value) is list:
                fields[key] = _copy(value)
        fields.update(values)
        return fields
    fields = _read_document(text)
    if len(_shape_memo) >= _SHAPE_MEMO_LIMIT:
        _shape_memo.clear()
    _shape_memo[shape] = _copy(fields)
    return fields


def _masked(text: str) -> tuple[str, dict[str, str]] | None:
    """Return the text with the values of its top-level ``name``/``version``/``creation_time`` lines masked,
    and those values; None if one of them occurs twice or is not a scalar PyYAML reads as a string."""
    framed = "\n" + text
    spans = []
    values = {}
    for key, head in _VARYING_LINES:
        start = framed.find(head)
        if start == -1:
            continue
        if framed.find(head, start + 1) != -1:
            return None
        start += len(head)
        end = framed.find("\n", start)
        if end == -1:
            end = len(framed)
        raw = framed[start:end]
        if raw[:1] == "'" and raw[-1:] == "'" and len(raw) > 1 and "'" not in raw[1:-1]:
            value: Any = raw[1:-1]
        elif _SIMPLE_PLAIN.fullmatch(raw) is None and _STRING_VALUE.fullmatch(raw) is None:
            return None
        else:
            try:
                value = _scalar(raw)
            except Unsupported:
                return None
            if not isinstance(value, str):
                return None
        values[key] = value
        spans.append((start, end))
    spans.sort()
    pieces = []
    position = 0
    for start, end in spans:
        pieces.append(framed[position:start])
        pieces.append(_MASK)
        position = end
    pieces.append(framed[position:])
    return "".join(pieces), values


def _copy(value: Any) -> Any:
    """Each result gets its own collections (a remembered one may hold ``{}`` or ``[]`` values)."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _read_document(text: str) -> dict[str, Any]:
    tokens = _tokenize(text)
    if not tokens or tokens[0][1] != _ENTRY:
        raise Unsupported("not a block mapping")
    document, position = _node(tokens, 0)
    if position != len(tokens):
        raise Unsupported("text after the document")
    return project(document)


def _tokenize(text: str) -> list[Token]:
    """Split lines into (indent, kind, key, value) tokens; ``- key: v`` gives an item and an entry."""
    tokens: list[Token] = []
    memo = _line_memo
    for line in text.split("\n"):
        line_tokens = memo.get(line)
        if line_tokens is None:
            line_tokens = _line_tokens(line)
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            memo[line] = line_tokens
        tokens += line_tokens
    return tokens


def _line_tokens(line: str) -> tuple[Token, ...]:
    if not line:
        return ()
    match = _LINE.fullmatch(line)
    if match is None:
        raise Unsupported(f"a line outside the simple block shape: {line[:80]!r}")
    spaces, dashes, key, value, scalar = match.groups()
    indent = len(spaces)
    tokens: list[Token] = []
    for _ in range(len(dashes) // 2):
        tokens.append((indent, _ITEM, None, None))
        indent += 2
    if scalar is not None:
        tokens.append((indent, _SCALAR, None, _scalar(scalar)))
    elif len(key) > _LONGEST_SIMPLE_KEY:
        raise Unsupported("key too long")
    else:
        tokens.append((indent, _ENTRY, _scalar(key), _NO_VALUE if value is None else _scalar(value)))
    return tuple(tokens)


def _scalar(raw: str) -> Any:
    """Return the value of a scalar the line pattern accepted: a str, ``EMPTY_*`` or a ``Typed``."""
    first = raw[0]
    if first == "'":
        return raw[1:-1].replace("''", "'")
    if first == '"':
        return raw[1:-1]
    if raw == "{}":
        return _EMPTY_MAPPING
    if raw == "[]":
        return _EMPTY_SEQUENCE
    for tag, pattern in _LOADER.yaml_implicit_resolvers.get(first, ()):
        if pattern.match(raw):
            if tag not in _SAFE_TYPED:
                raise Unsupported(f"{tag} scalar {raw!r}")
            shape = _SAFE_TYPED[tag]
            if shape is not None and shape.fullmatch(raw) is None:
                raise Unsupported(f"unusual number {raw!r}")
            return Typed(raw)
    return raw


def _node(tokens: list[Token], position: int) -> tuple[Any, int]:
    """Read the node starting at ``tokens[position]``; return it and the position after it.

    Every token must sit where YAML would read it the same way; else Unsupported.
    """
    indent, kind, _, value = tokens[position]
    if kind == _ITEM:
        return _sequence(tokens, position, indent)
    if kind == _ENTRY:
        return _mapping(tokens, position, indent)
    position += 1
    if position < len(tokens) and tokens[position][0] >= indent:
        raise Unsupported("multi-line scalar")
    return _fresh(value), position


def _fresh(value: Any) -> Any:
    """Tokens are shared between files: give each document its own empty collections."""
    if value is _EMPTY_MAPPING:
        return {}
    if value is _EMPTY_SEQUENCE:
        return []
    return value


def _mapping(tokens: list[Token], position: int, indent: int) -> tuple[dict[Any, Any], int]:
    mapping: dict[Any, Any] = {}
    end = len(tokens)
    while position < end:
        token_indent, kind, key, value = tokens[position]
        if token_indent < indent:
            break
        if token_indent > indent or kind != _ENTRY or isinstance(key, Typed) or key in mapping:
            raise Unsupported("misplaced line, typed key or duplicate key in a mapping")
        position += 1
        if value is _NO_VALUE:
            value, position = _block_value(tokens, position, indent)
        elif value is _EMPTY_MAPPING or value is _EMPTY_SEQUENCE:
            value = _fresh(value)
        mapping[key] = value
    return mapping, position


def _block_value(tokens: list[Token], position: int, indent: int) -> tuple[Any, int]:
    """The value of ``key:`` with nothing after the colon: a deeper block, ``- `` items at the key's own
    indent (PyYAML writes sequences in mappings that way), or null."""
    if position < len(tokens):
        following_indent, following_kind = tokens[position][:2]
        if following_indent > indent:
            return _node(tokens, position)
        if following_indent == indent and following_kind == _ITEM:
            return _sequence(tokens, position, indent)
    return None, position


def _sequence(tokens: list[Token], position: int, indent: int) -> tuple[list[Any], int]:
    sequence: list[Any] = []
    end = len(tokens)
    while position < end and tokens[position][0] == indent and tokens[position][1] == _ITEM:
        position += 1
        if position < end and tokens[position][0] > indent:
            value, position = _node(tokens, position)
        else:
            value = None
        sequence.append(value)
    return sequence, position


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
            [({"models": _references(s["models"])} if "models" in s else {}) if isinstance(s, dict) else None for s in services]
            if isinstance(services, list)
            else None
        )
    return fields


def _exact(value: Any) -> Any:
    if value is None or isinstance(value, str) or value == {} or value == []:
        return value
    raise Unsupported("a needed field is not a plain string")


def _references(entries: Any) -> list[Any] | None:
    """A bento's model list, as much of it as ``metadata.model_references`` looks at: whether it is a list,
    whether each entry is a mapping, and its ``tag`` if that is a string (None: not a list, not a mapping,
    no string tag)."""
    if not isinstance(entries, list):
        return None
    return [{"tag": _string_or_none(entry.get("tag"))} if isinstance(entry, dict) else None for entry in entries]


def _string_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
