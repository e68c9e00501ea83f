"""Terminal tables padded by display width: a Hangul syllable (or any East Asian wide character) takes
two columns, a combining mark none, so ``f"{label:<12}"`` misaligns Korean labels; every command that
prints a table pads with :func:`pad` or lays it out with :func:`table`."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence

logger = logging.getLogger(__name__)

__all__ = ["pad", "table", "width"]


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal (East Asian Wide/Fullwidth: 2, combining marks: 0)."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def pad(text: str, columns: int, align: str = "<") -> str:
    """``text`` padded with spaces to ``columns`` display columns: ``<`` left, ``>`` right, ``^`` centred.
    Longer text is returned whole (a table widens rather than cuts)."""
    gap = max(columns - width(text), 0)
    if align == ">":
        return " " * gap + text
    if align == "^":
        return " " * (gap // 2) + text + " " * (gap - gap // 2)
    return text + " " * gap


def table(rows: Sequence[Sequence[object]], *, headers: Sequence[str] | None = None, align: str = "",
          indent: str = "", sep: str = "  ") -> list[str]:
    """Lines of a table whose columns line up on screen: each column as wide as its widest cell (by
    display width). ``align``: one of ``<``/``>``/``^`` per column (default left); cells are ``str()``-ed."""
    body = [[str(c) for c in row] for row in rows]
    grid = ([list(headers)] if headers else []) + body
    if not grid:
        return []
    n = max(len(r) for r in grid)
    widths = [max((width(r[i]) for r in grid if i < len(r)), default=0) for i in range(n)]
    aligns = align.ljust(n, "<")
    return [indent + sep.join(pad(cell, widths[i], aligns[i]) for i, cell in enumerate(r)).rstrip() for r in grid]
