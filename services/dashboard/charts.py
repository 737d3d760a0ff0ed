"""Line charts as inline SVG (pure): no script and no build step, readable without colour.

Every point is a `<circle>` carrying its series, minute and value as data attributes, so a
test (and a curious reader) can check the drawing against the tables it came from.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

PALETTE = (
    "#1c7ed6", "#2f9e44", "#f08c00", "#ae3ec9", "#e03131", "#0c8599", "#5c940d", "#862e9c",
    "#d9480f", "#364fc7",
)  # fmt: skip
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[tuple[datetime, int], ...]  # (minute, files), minutes ascending, no gaps


def fill_minutes(
    counts: dict[str, dict[datetime, int]], order: Sequence[str] | None = None
) -> list[Series]:
    """One series per name over the same minutes, first to last, a minute without files at 0."""
    minutes = [m for per in counts.values() for m in per]
    if not minutes:
        return []
    first, last = min(minutes), max(minutes)
    span = [first + i * MINUTE for i in range(int((last - first) / MINUTE) + 1)]
    names = [n for n in (order or sorted(counts)) if n in counts]
    return [Series(n, tuple((m, counts[n].get(m, 0)) for m in span)) for n in names]


def line_chart(chart_id: str, series: Sequence[Series], unit: str) -> str:
    if not series or not series[0].points:
        return '<p class="empty">Nothing has finished yet.</p>'
    width, height, left, bottom, top, right = 880, 220, 48, 28, 12, 12
    minutes = [m for m, _ in series[0].points]
    peak = max(1, *(n for s in series for _, n in s.points))
    steps = max(1, len(minutes) - 1)

    def x(i: int) -> float:
        return left + (width - left - right) * (i / steps if len(minutes) > 1 else 0.5)

    def y(n: int) -> float:
        return top + (height - top - bottom) * (1 - n / peak)

    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(unit)}" data-peak="{peak}">',
        f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}" class="axis"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y(0):.1f}" class="axis"/>',
        f'<text x="{left - 6}" y="{y(peak) + 4:.1f}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 6}" y="{y(0) + 4:.1f}" text-anchor="end">0</text>',
    ]
    for i in sorted({0, len(minutes) - 1, *range(0, len(minutes), max(1, len(minutes) // 6))}):
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - 8}" text-anchor="middle">{minutes[i]:%H:%M}</text>'
        )
    for k, s in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        coords = " ".join(f"{x(i):.1f},{y(n):.1f}" for i, (_, n) in enumerate(s.points))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}" '
            f'data-series="{escape(s.name)}"/>'
        )
        for i, (minute, n) in enumerate(s.points):
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(n):.1f}" r="2.5" fill="{colour}" '
                f'data-series="{escape(s.name)}" data-minute="{minute:%Y-%m-%d %H:%M}" '
                f'data-files="{n}"><title>{escape(s.name)} {minute:%H:%M}: {n} {escape(unit)}'
                "</title></circle>"
            )
    parts.append("</svg>")
    legend = "".join(
        f'<i style="background:{PALETTE[k % len(PALETTE)]}"></i>{escape(s.name)}'
        for k, s in enumerate(series)
    )
    return (
        f'<figure class="chart-box">{"".join(parts)}<figcaption class="legend meta">{legend}'
        f" · {escape(unit)}</figcaption></figure>"
    )
