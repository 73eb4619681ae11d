"""Text-level surgery on a YAML rule file: where a scalar ends, which lines a rule spans, splices.

The form never re-dumps YAML: it replaces a few characters, or inserts or removes one line, and
everything else (comments, order, quoting, flow style) stays byte for byte. These helpers find
the spans; form.py checks afterwards that the new text means exactly what was intended.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True, order=True)
class Splice:
    """Replace text[start:end] with `text` (start == end inserts); `rank` orders insertions at one place."""

    start: int
    end: int
    rank: int = 0
    text: str = ""


def splice(text: str, splices: Iterable[Splice]) -> str:
    """Apply non-overlapping splices to `text`; raise ValueError when two overlap."""
    out, cursor = [], 0
    for item in sorted(splices):
        if item.start < cursor:
            raise ValueError(f"two edits overlap at offset {item.start}")
        out.append(text[cursor : item.start])
        out.append(item.text)
        cursor = item.end
    out.append(text[cursor:])
    return "".join(out)


def newline(text: str) -> str:
    """Return the file's line ending."""
    return "\r\n" if "\r\n" in text else "\n"


def offset(text: str, line: int, column: int) -> int:
    """Return the offset in `text` of a 1-based line and column."""
    start = 0
    for _ in range(line - 1):
        start = text.index("\n", start) + 1
    return start + column - 1


def line_bounds(text: str, at: int) -> tuple[int, int]:
    """Return the start of the line holding offset `at` and the offset just after its line break."""
    start = text.rfind("\n", 0, at) + 1
    end = text.find("\n", at)
    return start, len(text) if end < 0 else end + 1


def scalar_end(text: str, start: int, *, flow: bool) -> int | None:
    """Return where a one-line scalar starting at `start` ends (after its closing quote); None if it goes on."""
    char = text[start : start + 1]
    if char in ("'", '"'):
        i = start + 1
        while i < len(text) and text[i] not in "\r\n":
            if char == '"' and text[i] == "\\":
                i += 2
                continue
            if text[i] == char:
                if char == "'" and text[i + 1 : i + 2] == "'":  # '' is a quote inside '…'
                    i += 2
                    continue
                return i + 1
            i += 1
        return None
    stops = re.compile(r"[\r\n]| #|[,\]}]" if flow else r"[\r\n]| #")
    found = stops.search(text, start)
    end = found.start() if found else len(text)
    while end > start and text[end - 1] in " \t":
        end -= 1
    return end


def rest_is_blank(text: str, at: int) -> bool:
    """Tell whether the line from `at` holds nothing but spaces and perhaps a comment."""
    _, end = line_bounds(text, at)
    rest = text[at:end].strip()
    return not rest or rest.startswith("#")


def key_line(text: str, value_start: int, key: str) -> tuple[int, int] | None:
    """Return the span of the whole line `key: value` (to remove it), or None when the line holds more."""
    start, end = line_bounds(text, value_start)
    if not re.fullmatch(rf" *{re.escape(key)} *: *", text[start:value_start]):
        return None  # e.g. "- enabled: false", the first key of its rule: removing the line would take the "- " too
    return start, end


def block_end(text: str, first_line: int, indent: int) -> int:
    """Return the offset after the last line of a block mapping whose keys are `indent` spaces in.

    The mapping goes on while lines are blank or indented at least that far (its keys, nested
    values, block scalars, comments among them); it ends before the first line indented less.
    """
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    last = first_line - 1  # 0-based index of the mapping's last line
    for index in range(first_line, len(lines)):
        raw = lines[index]
        if not raw.strip():
            continue
        if len(raw) - len(raw.lstrip(" ")) < indent:
            break
        last = index
    return starts[last + 1]


def squash(text: str) -> str:
    """Drop all whitespace: how a piece of a condition compares with its source across line folds."""
    return re.sub(r"\s+", "", text)


def encode(piece: str, style: str | None) -> str:
    """Return how `piece` of a scalar's value is written inside a scalar of that YAML style."""
    if style == "'":
        return piece.replace("'", "''")
    if style == '"':
        return piece.replace("\\", "\\\\").replace('"', '\\"')
    return piece
