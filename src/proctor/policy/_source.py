"""Where each policy of a ``.cedar`` file starts, so errors can name a file and line.

cedarpy reports syntax and validation errors without source positions (only the first
syntax error's message, or ``policyN`` for the N-th policy of the text). To point at a line
we cut the file into its ``;``-terminated statements ourselves. That takes only Cedar's
lexical rules for string literals (with backslash escapes) and ``//`` line comments, the
only places a ``;`` can appear without ending a policy; Cedar itself still parses every
statement, so this cutter never decides what a policy means.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Statement", "split_statements"]


@dataclass(frozen=True)
class Statement:
    """One policy's text (annotations included) and the line it starts on (1-based)."""

    text: str
    line: int


def split_statements(text: str) -> list[Statement]:
    """The file's statements in order; trailing text without a ``;`` is its own statement."""
    out: list[Statement] = []
    start = 0  # offset of the current statement's text
    first: int | None = None  # line of its first token
    line = 1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif c.isspace():
            pass
        else:
            if first is None:
                first = line
            if c == '"':
                i, line = _skip_string(text, i, line)
                continue
            if c == ";":
                out.append(Statement(text[start : i + 1], first))
                start, first = i + 1, None
        i += 1
    if first is not None:
        out.append(Statement(text[start:], first))
    return out


def _skip_string(text: str, i: int, line: int) -> tuple[int, int]:
    """Offset just past the string literal opening at ``i``, and the line there."""
    i += 1
    while i < len(text) and text[i] != '"':
        if text[i] == "\\":
            i += 1  # the escaped character, which may be a newline
        if i < len(text) and text[i] == "\n":
            line += 1
        i += 1
    return i + 1, line
