"""Small HTML helpers shared by the check reports: coloured verdict badges and plain tables."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

# verdict -> (background, label); colours readable in light and dark notebook themes
BADGES = {
    "accurate": ("#1a7f37", "accurate"),
    "inaccurate": ("#bc4c00", "inaccurate"),
    "unstable": ("#8250df", "unstable"),
    "failed": ("#cf222e", "failed"),
    "agrees": ("#1a7f37", "agrees"),
    "diverges": ("#cf222e", "diverges"),
}


def badge(verdict: str) -> str:
    """A rounded coloured label for a verdict (unknown verdicts are grey)."""
    colour, label = BADGES.get(verdict, ("#6e7781", verdict))
    return (
        f'<span style="background:{colour};color:white;border-radius:0.8em;padding:0.1em 0.6em;'
        f'font-weight:600;font-size:0.9em;white-space:nowrap">{html.escape(label)}</span>'
    )


def number(value: float | None, digits: int = 2) -> str:
    """A float in short scientific form; None and NaN as an em dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}e}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], raw: bool = False) -> str:
    """An HTML table; cells are escaped unless `raw` (for cells that already hold badges)."""
    cell = (lambda x: str(x)) if raw else (lambda x: html.escape(str(x)))
    head = "".join(f'<th style="text-align:left;padding:2px 8px">{html.escape(h)}</th>'
                   for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="padding:2px 8px">{cell(c)}</td>' for c in row) + "</tr>"
        for row in rows
    )
    return f'<table style="border-collapse:collapse"><tr>{head}</tr>{body}</table>'


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A fixed-width plain-text table for __str__."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def finite_or_none(x: Any) -> Any:
    """`x` with every non-finite float (in dicts and lists too) replaced by None (for JSON)."""
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_or_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
