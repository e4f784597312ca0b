"""Inline SVG charts for the HTML report: drawn here, no scripts, fonts or external assets.

Amounts of different currencies never share an axis: each chart is for one currency.
- `ageing_bars`: what is overdue in each ageing bucket (horizontal bars, amounts labelled);
- `cumulative_line`: money recovered over time, as a running total (a step line).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timedelta

#: From recent to long overdue: light to dark.
BUCKET_COLOURS = ("#f6c35b", "#f08c3a", "#d9534f", "#8e1b1b")
LINE_COLOUR = "#1f7a4d"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _money(cents: float) -> str:
    whole, part = divmod(round(abs(cents)), 100)
    return f"{'-' if cents < 0 else ''}{whole:,}.{part:02d}"


def _svg(title: str, width: int, height: int, shapes: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f"<title>{_e(title)}</title>{''.join(shapes)}</svg>"
    )


def ageing_bars(currency: str, buckets: Sequence[tuple[str, int]]) -> str:
    """One bar per bucket (label, cents), longest = the largest bucket of this currency."""
    width, row, left, right, top = 340, 30, 58, 100, 6
    height = top * 2 + row * len(buckets)
    largest = max((cents for _, cents in buckets), default=0) or 1
    span = width - left - right
    shapes: list[str] = []
    for index, (label, cents) in enumerate(buckets):
        y = top + index * row
        length = span * cents / largest
        colour = BUCKET_COLOURS[min(index, len(BUCKET_COLOURS) - 1)]
        shapes.append(
            f'<text class="label" x="{left - 8}" y="{y + 19}" text-anchor="end">'
            f"{_e(label)} d</text>"
        )
        shapes.append(
            f'<rect class="bucket" x="{left}" y="{y + 5}" width="{max(length, 1.5):.1f}" '
            f'height="{row - 10}" fill="{colour}" rx="2"><title>{_e(label)} days: '
            f"{_e(_money(cents))} {_e(currency)}</title></rect>"
        )
        shapes.append(
            f'<text class="amount" x="{left + length + 6:.1f}" y="{y + 19}">'
            f"{_e(_money(cents))}</text>"
        )
    return _svg(f"Overdue {currency} by days past due", width, height, shapes)


def _time_label(moment: datetime, span: timedelta) -> str:
    if span <= timedelta(minutes=20):
        return moment.strftime("%H:%M:%S")
    if span <= timedelta(days=1):
        return moment.strftime("%H:%M")
    if span <= timedelta(days=8):
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d")


def cumulative_line(
    currency: str,
    points: Sequence[tuple[datetime, int]],
    *,
    end: datetime,
    start: datetime | None = None,
) -> str:
    """A running total of `points` (time, cents) from `start` (the first request; default the
    first point) to `end`."""
    width, height = 520, 200
    left, right, top, bottom = 78, 16, 12, 30
    first = points[0][0] if points else end - timedelta(hours=1)
    start = min(start, first) if start is not None else first
    finish = max(end, start + timedelta(minutes=1))
    span = finish - start
    plot_w, plot_h = width - left - right, height - top - bottom
    total = sum(cents for _, cents in points) or 1

    def x(moment: datetime) -> float:
        return left + plot_w * (moment - start) / span

    def y(cents: float) -> float:
        return top + plot_h * (1 - cents / total)

    shapes: list[str] = []
    for step in range(3):
        value = total * step / 2
        shapes.append(
            f'<line class="grid" x1="{left}" y1="{y(value):.1f}" x2="{width - right}" '
            f'y2="{y(value):.1f}"/>'
        )
        shapes.append(
            f'<text class="label" x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{_e(_money(value))}</text>"
        )
    for step in range(5):
        moment = start + span * step / 4
        anchor = "start" if step == 0 else "end" if step == 4 else "middle"
        shapes.append(
            f'<text class="label" x="{x(moment):.1f}" y="{height - 10}" text-anchor="{anchor}">'
            f"{_e(_time_label(moment, span))}</text>"
        )
    running = 0
    path = [f"M{x(start):.1f},{y(0):.1f}"]
    for moment, cents in points:
        path.append(f"H{x(moment):.1f}")
        running += cents
        path.append(f"V{y(running):.1f}")
    path.append(f"H{x(finish):.1f}")
    line = "".join(path)
    area = f"{line}V{y(0):.1f}Z"
    shapes.append(f'<path class="area" d="{area}" fill="{LINE_COLOUR}" fill-opacity="0.12"/>')
    shapes.append(
        f'<path class="line" d="{line}" fill="none" stroke="{LINE_COLOUR}" stroke-width="2"/>'
    )
    shapes.append(
        f'<line class="axis" x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}"/>'
    )
    return _svg(f"Recovered {currency} over time (running total)", width, height, shapes)
