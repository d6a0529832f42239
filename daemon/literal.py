"""Text from users, printed as it is: a label, a name, a path or an error message can never steer the terminal.

Everything retentiond prints for a human goes through :func:`visible`: the rich tables of
:mod:`daemon.render` (its console applies it to every string), and the plain lines of the other
commands and of the CLI's errors (:func:`print_line`). It imports nothing of ours and not rich, so
the commands that print without rich stay fast to start.
"""

from __future__ import annotations

import sys
import unicodedata
from typing import TextIO

# Control characters (ESC starts every terminal escape sequence, C1 0x9b is a one-byte CSI),
# format characters (bidi overrides reorder what follows them on screen; zero-width ones make two
# different names look equal), line and paragraph separators, and lone surrogates (an undecodable
# byte of a file name, which would make the write itself raise UnicodeEncodeError).
# Zs: spaces other than " " (no-break, en, ideographic...) look like a space or like nothing, so a value could
# pass for another or end a line in what looks like a trailing space; they are shown escaped too.
_SHOWN_ESCAPED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Zs"})
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: str) -> str:
    """Given any text, return it with every character that could move the cursor, colour the screen, start a
    new line, reorder what follows or pass for a plain space replaced by its Python escape (``\\x1b``,
    ``\\n``, ``\\u202e``, ``\\xa0``).

    Printable text comes back unchanged, the same object. Backslashes are not doubled: the result is for
    reading, not for parsing back.
    """
    if text.isprintable():
        return text
    return "".join(
        _escape(character) if character != " " and unicodedata.category(character) in _SHOWN_ESCAPED else character
        for character in text
    )


def _escape(character: str) -> str:
    if character in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[character]
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def print_line(text: str, stream: TextIO | None = None) -> None:
    """Given one line of output, write it and a newline on ``stream`` (default: the current stdout), every
    character of it visible: a value inside it cannot add a line or an escape sequence of its own."""
    (stream if stream is not None else sys.stdout).write(visible(text) + "\n")
