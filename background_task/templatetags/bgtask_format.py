"""Template filters of the admin dashboard."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def percent(value: float | None) -> str:
    """0.0123 -> "1.2 %"."""
    if value is None:
        return "-"
    return f"{value * 100:.1f} %"


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds in the unit that reads best: "850 µs", "12.3 ms", "4.56 s", "3 min 20 s"."""
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1_000_000:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
