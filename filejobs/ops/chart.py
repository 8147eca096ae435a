"""A text chart of a replay that fits an 80-column terminal: the jobs running and waiting above, the
instances busy and idle below, as each minute ends; one column per minute (or, for a run longer than
the width, per few minutes, showing the busiest). ASCII only, so it survives any terminal or log.

Pure: rows of ``replay.Row`` in, lines out.
"""

from __future__ import annotations

import math
from typing import Sequence

LABEL = 7  # the value labels' width; a line is LABEL + 2 + the columns


def _columns(series: Sequence, width: int) -> tuple[list, int]:
    """The rows to draw, one per column: of each group of ``per`` minutes the busiest."""
    room = max(10, width - LABEL - 2)
    per = max(1, math.ceil(len(series) / room))
    cols = [max(series[i:i + per], key=lambda r: (r.visible_end + r.in_flight_end, r.instances))
            for i in range(0, len(series), per)]
    return cols, per


def _height(value: float, top: float, rows: int) -> int:
    """Cells for ``value`` on a scale of ``rows`` cells to ``top``; anything above 0 shows."""
    if value <= 0 or top <= 0:
        return 0
    return max(1, min(rows, round(value / top * rows)))


def _panel(title: str, lower: list[int], upper: list[int], rows: int, marks: str) -> list[str]:
    """Two stacked series (``lower`` at the bottom, ``upper`` on top of it)."""
    top = max((a + b for a, b in zip(lower, upper)), default=0)
    totals = [_height(a + b, top, rows) for a, b in zip(lower, upper)]
    bottoms = [min(t, _height(a, top, rows)) for a, t in zip(lower, totals)]
    lines = [title]
    for level in range(rows, 0, -1):
        label = f"{top:,}" if level == rows else (f"{top / 2:,.0f}" if level == (rows + 1) // 2 and top >= 4 else "")
        cells = "".join(marks[0] if b >= level else marks[1] if t >= level else " " for b, t in zip(bottoms, totals))
        lines.append(f"{label:>{LABEL}} |{cells}".rstrip())
    lines.append(f"{'0':>{LABEL}} +{'-' * len(lower)}")
    return lines


def _axis(columns: int, per: int, width: int) -> str:
    """Minute labels under every tenth column (as far as the width allows)."""
    cells = [" "] * max(columns, width - LABEL - 2)
    for col in range(0, columns, 10):
        label = str(col * per)
        if col + len(label) <= len(cells):
            cells[col:col + len(label)] = label
    return f"{'minute':>{LABEL}}  " + "".join(cells).rstrip()


def render(series: Sequence, *, width: int = 80) -> list[str]:
    if not series:
        return ["(no minutes to chart)"]
    cols, per = _columns(series, width)
    out = _panel("jobs running (=) and waiting (#) as each minute ends",
                 [r.in_flight_end for r in cols], [r.visible_end for r in cols], 8, "=#")
    if per > 1:
        out.insert(1, f"(each column is {per} minutes: the busiest of them)")
    out += _panel("instances: busy (#) and idle (:)",
                  [min(r.busy, r.instances) for r in cols], [max(0, r.instances - r.busy) for r in cols], 6, "#:")
    out.append(_axis(len(cols), per, width))
    return out
