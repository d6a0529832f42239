"""Lay tables out for a terminal of a given width, or for a pipe: plain lines, nothing cut, no trailing spaces.

A table has *fixed* columns (ids, timestamps, sizes: never wrapped or cut) and may end in *detail* columns
(reasons, errors, the rest of a row), whose cells are lists of items. Three layouts, the first that fits:

- **table**: every column side by side; the last detail column wraps under itself, one item per line, when
  it is at least ``MIN_WRAP_WIDTH`` wide;
- **details**: the fixed columns side by side, and each row's details on indented lines under it;
- **records**: a column too wide even for that (a 63-character name at 80 columns): each row becomes its
  first value on a line and one indented ``header: value`` line per other column.

Off a terminal (``width`` None) the table layout is used and nothing wraps: one line per row, items joined
by "; ", so ``grep`` and ``awk`` see whole rows. Every value is passed through
:func:`daemon.literal.visible` before it is measured; imports nothing of rich, so widths are counted here
(East Asian wide characters and emoji take two cells, combining marks none).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.literal import visible

MIN_WRAP_WIDTH = 20
GAP = "  "
INDENT = "    "
HEADER = -1

Cell = str | Sequence[str]


@dataclass(frozen=True)
class Column:
    """One column: its header, whether its values align right (numbers), whether it is a detail column."""

    header: str
    right: bool = False
    detail: bool = False


@dataclass(frozen=True)
class Line:
    """One output line and the row it belongs to (``HEADER`` for the header lines), for styling."""

    text: str
    row: int


def cell_width(text: str) -> int:
    """Return how many terminal cells ``text`` (already visible) takes."""
    if text.isascii():
        return len(text)
    width = 0
    for character in text:
        if unicodedata.combining(character):
            continue
        width += 2 if unicodedata.east_asian_width(character) in ("W", "F") else 1
    return width


def wrap(text: str, width: int, rest_width: int | None = None) -> list[str]:
    """Given visible text, return it cut into lines of at most ``width`` cells (``rest_width`` after the first
    line, if given), at spaces where possible.

    A word longer than a line is folded; nothing is dropped but the spaces a line breaks at.
    """
    lines: list[str] = []
    current = ""

    def room() -> int:
        return max(width if not lines or rest_width is None else rest_width, 1)

    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if cell_width(candidate) <= room():
            current = candidate
            continue
        if current:
            lines.append(current.rstrip())
        current = ""
        while cell_width(word) > room():
            head, word = _fold(word, room())
            lines.append(head)
        current = word
    lines.append(current.rstrip())
    return lines


def _fold(word: str, width: int) -> tuple[str, str]:
    taken = 0
    for index, character in enumerate(word):
        taken += cell_width(character)
        if taken > width:
            return word[: max(index, 1)], word[max(index, 1) :]
    return word, ""


def layout(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int | None, min_wrap: int = MIN_WRAP_WIDTH
) -> list[Line]:
    """Given columns and rows of cells (a str, or a list of items for a detail column), return the lines to print.

    ``width`` is the terminal's; None means a pipe, where nothing wraps. The last detail column wraps under
    itself only when it gets at least ``min_wrap`` cells; else the details go on lines of their own.
    """
    shown = [[_items(cell) for cell in row] for row in rows]
    fixed = [index for index, column in enumerate(columns) if not column.detail]
    details = [index for index, column in enumerate(columns) if column.detail]
    if width is None:
        return _table(columns, shown, list(range(len(columns))), None)
    widths = _widths(columns, shown, fixed)
    fixed_width = sum(widths.values()) + len(GAP) * (len(fixed) - 1)
    if not details:
        if fixed_width <= width:
            return _table(columns, shown, fixed, None)
        return _records(columns, shown, width)
    side_by_side = _widths(columns, shown, details[:-1])
    before_last = fixed_width + sum(side_by_side.values()) + len(GAP) * len(details)
    if width - before_last >= min_wrap:
        return _table(columns, shown, list(range(len(columns))), width - before_last)
    if fixed_width <= width:
        return _with_details(columns, shown, fixed, details, width)
    return _records(columns, shown, width)


def _items(cell: Cell) -> list[str]:
    items = [cell] if isinstance(cell, str) else list(cell)
    return [visible(item) for item in items]


def _widths(columns: Sequence[Column], shown: list[list[list[str]]], indexes: Sequence[int]) -> dict[int, int]:
    return {
        index: max([cell_width(columns[index].header)] + [cell_width("; ".join(row[index])) for row in shown])
        for index in indexes
    }


def _table(columns: Sequence[Column], shown: list[list[list[str]]], indexes: list[int], last_width: int | None) -> list[Line]:
    """Every column in ``indexes`` side by side; the last one wraps at ``last_width`` (one item per line) if given."""
    widths = _widths(columns, shown, indexes[:-1] if last_width is not None else indexes)
    lines = [Line(_join(columns, indexes, widths, [[columns[index].header] for index in indexes]), HEADER)]
    for number, row in enumerate(shown):
        cells = [row[index] for index in indexes]
        if last_width is None:
            lines.append(Line(_join(columns, indexes, widths, [["; ".join(cell)] for cell in cells]), number))
            continue
        wrapped = [piece for item in cells[-1] for piece in wrap(item, last_width)] or [""]
        first = [["; ".join(cell)] for cell in cells[:-1]] + [[wrapped[0]]]
        lines.append(Line(_join(columns, indexes, widths, first), number))
        padding = sum(widths[index] for index in indexes[:-1]) + len(GAP) * (len(indexes) - 1)
        lines.extend(Line((" " * padding + piece).rstrip(), number) for piece in wrapped[1:])
    return lines


def _join(columns: Sequence[Column], indexes: Sequence[int], widths: dict[int, int], cells: list[list[str]]) -> str:
    parts = []
    for index, cell in zip(indexes, cells):
        text = cell[0]
        width = widths.get(index)
        if width is None:
            parts.append(text)
            continue
        padding = " " * (width - cell_width(text))
        parts.append(padding + text if columns[index].right else text + padding)
    return GAP.join(parts).rstrip()


def _with_details(
    columns: Sequence[Column], shown: list[list[list[str]]], fixed: list[int], details: list[int], width: int
) -> list[Line]:
    """The fixed columns as a table; each row's detail columns on indented lines under it."""
    widths = _widths(columns, shown, fixed)
    labelled = len(details) > 1
    lines = [Line(_join(columns, fixed, widths, [[columns[index].header] for index in fixed]), HEADER)]
    for number, row in enumerate(shown):
        lines.append(Line(_join(columns, fixed, widths, [["; ".join(row[index])] for index in fixed]), number))
        for index in details:
            label = f"{columns[index].header.lower()}: " if labelled else ""
            for item in row[index]:
                if item:
                    lines.extend(Line((INDENT + piece).rstrip(), number) for piece in wrap(label + item, width - len(INDENT)))
    return lines


def _records(columns: Sequence[Column], shown: list[list[list[str]]], width: int) -> list[Line]:
    """Each row as its first value, then one indented ``header: value`` line per other column."""
    lines: list[Line] = []
    for number, row in enumerate(shown):
        lines.extend(Line(piece, number) for piece in wrap("; ".join(row[0]), width))
        for column, cell in zip(columns[1:], row[1:]):
            label = f"{column.header.lower()}: "
            # Further items of a cell hang under its first, so that they do not read as columns of their own.
            hang = INDENT + " " * len(label) if width - len(INDENT) - len(label) >= MIN_WRAP_WIDTH else INDENT * 2
            for position, item in enumerate(cell or [""]):
                if position == 0:
                    pieces = [INDENT + piece for piece in wrap(label + item, width - len(INDENT))]
                else:
                    pieces = [hang + piece for piece in wrap(item, width - len(hang))]
                lines.extend(Line(piece.rstrip(), number) for piece in pieces)
    return lines
