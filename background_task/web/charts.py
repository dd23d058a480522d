"""Small server-rendered SVG line charts for the admin dashboard.

Pure functions of their inputs: no JavaScript, no external assets, so the
dashboard works offline and behind strict content security policies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe


@dataclass(frozen=True)
class Series:
    """One line: a label, a colour and one value per point (None: no data)."""

    label: str
    color: str
    values: Sequence[float | None]


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^n that is >= value (an axis maximum)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1.0
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _label(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def line_chart(
    times: Sequence[datetime],
    series: Sequence[Series],
    *,
    title: str,
    width: int = 720,
    height: int = 200,
    gap: timedelta | None = None,
) -> SafeString:
    """An SVG chart of ``series`` over ``times``; a line breaks where there is
    no value or where consecutive times are more than ``gap`` apart."""
    left, right, top, bottom = 48, 12, 24, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg class="bgtask-chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="14" font-weight="bold">{escape(title)}</text>',
    ]
    values = [v for s in series for v in s.values if v is not None]
    if not times or not values:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" '
            f'fill="#666">No samples yet: a running worker records one a minute.</text></svg>'
        )
        return mark_safe("".join(parts))
    top_value = _nice_ceiling(max(values))
    start, end = times[0], times[-1]
    span = max((end - start).total_seconds(), 60.0)

    def x(moment: datetime) -> float:
        return left + plot_w * (moment - start).total_seconds() / span

    def y(value: float) -> float:
        return top + plot_h * (1 - value / top_value)

    for fraction in (0, 0.5, 1):
        level = top_value * fraction
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(level):.1f}" y2="{y(level):.1f}" '
            f'stroke="#ddd"/><text x="{left - 6}" y="{y(level) + 4:.1f}" '
            f'text-anchor="end" fill="#666">{_label(level)}</text>'
        )
    for moment, anchor in ((start, "start"), (end, "end")):
        parts.append(
            f'<text x="{x(moment):.1f}" y="{height - 8}" text-anchor="{anchor}" '
            f'fill="#666">{moment:%Y-%m-%d %H:%M}</text>'
        )
    for index, line in enumerate(series):
        segments: list[list[str]] = [[]]
        previous: datetime | None = None
        for moment, value in zip(times, line.values, strict=True):
            broken = previous is not None and gap is not None and moment - previous > gap
            if value is None or broken:
                segments.append([])
            if value is not None:
                segments[-1].append(f"{x(moment):.1f},{y(value):.1f}")
            previous = moment
        for points in segments:
            if len(points) == 1:
                cx, cy = points[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{escape(line.color)}"/>')
            elif points:
                parts.append(
                    f'<polyline fill="none" stroke="{escape(line.color)}" stroke-width="1.5" '
                    f'points="{" ".join(points)}"/>'
                )
        legend_x = left + plot_w - 110 * (len(series) - index)
        parts.append(
            f'<rect x="{legend_x}" y="6" width="10" height="10" fill="{escape(line.color)}"/>'
            f'<text x="{legend_x + 14}" y="15">{escape(line.label)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))
