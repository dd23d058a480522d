"""A workflow's steps and their states, drawn as a server-rendered SVG.

A chain is drawn left to right, a group's members stacked in a column with
its ``then`` to the right and its ``on_failure`` below; each task step is a
box coloured by its state. Large groups show their first members and one
box counting the rest by state. Pure function of the nodes: no JavaScript.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

BOX_W, BOX_H, GAP, PAD = 168, 38, 26, 12
MEMBERS_SHOWN = 12  # members of a group drawn, the rest counted in one box
COLORS = {
    "pending": "#d9d9d9",
    "started": "#79aec8",
    "done": "#5b8c5a",
    "failed": "#ba2121",
    "cancelled": "#8a8a8a",
}


@dataclass
class Shape:
    """Something laid out: its size and the SVG parts drawn at an offset."""

    width: int
    height: int
    parts: list[tuple[int, int, Any]] = field(default_factory=list)  # (x, y, node or text)


def _box(node: Any) -> Shape:
    return Shape(BOX_W, BOX_H, [(0, 0, node)])


def _summary(nodes: Sequence[Any]) -> Shape:
    counts = Counter(node.status for node in nodes)
    states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    text = f"+{len(nodes)} more: {states}"
    return Shape(BOX_W, BOX_H, [(0, 0, text)])


def _layout(node: Any, children: dict[int | None, list[Any]]) -> Shape:
    kids = children.get(node.pk, [])
    members = [kid for kid in kids if kid.role == "member"]
    if node.kind == "task":
        return _box(node)
    if node.kind == "chain":
        shapes = [_layout(member, children) for member in members]
        return _row(shapes)
    shown = [_layout(member, children) for member in members[:MEMBERS_SHOWN]]
    if len(members) > MEMBERS_SHOWN:
        shown.append(_summary(members[MEMBERS_SHOWN:]))
    column = _column(shown)
    then = [kid for kid in kids if kid.role == "then"]
    handler = [kid for kid in kids if kid.role == "on_failure"]
    shape = _row([column, _layout(then[0], children)]) if then else column
    if handler:
        below = _layout(handler[0], children)
        shape = _column([shape, below], dashed_last=True)
    return shape


def _row(shapes: Sequence[Shape]) -> Shape:
    if not shapes:
        return Shape(BOX_W, BOX_H, [(0, 0, "(empty)")])
    height = max(shape.height for shape in shapes)
    parts: list[tuple[int, int, Any]] = []
    x = 0
    for index, shape in enumerate(shapes):
        y = (height - shape.height) // 2
        parts += [(x + px, y + py, what) for px, py, what in shape.parts]
        x += shape.width
        if index < len(shapes) - 1:
            parts.append((x, height // 2, ("arrow", GAP)))
            x += GAP
    return Shape(x, height, parts)


def _column(shapes: Sequence[Shape], dashed_last: bool = False) -> Shape:
    if not shapes:
        return Shape(BOX_W, BOX_H, [(0, 0, "(empty)")])
    width = max(shape.width for shape in shapes)
    parts: list[tuple[int, int, Any]] = []
    y = 0
    for index, shape in enumerate(shapes):
        if dashed_last and index == len(shapes) - 1:
            parts.append((0, y, ("label", "on failure:")))
            y += 16
        parts += [(px, y + py, what) for px, py, what in shape.parts]
        y += shape.height + PAD
    return Shape(width, y - PAD, parts)


def _short(name: str | None) -> str:
    name = name or "?"
    tail = name.rsplit(".", 1)[-1]
    return tail if len(tail) <= 22 else tail[:21] + "…"


def workflow_svg(nodes: Sequence[Any]) -> SafeString:
    """The SVG of a workflow whose nodes (``pk``, ``parent_id``, ``kind``,
    ``role``, ``position``, ``status``, ``task_name``, ``task_id``) are given."""
    children: dict[int | None, list[Any]] = {}
    for node in sorted(nodes, key=lambda n: (n.position, n.pk)):
        children.setdefault(node.parent_id, []).append(node)
    roots = children.get(None, [])
    if not roots:
        return mark_safe("<p>This workflow has no steps.</p>")
    shape = _layout(roots[0], children)
    width, height = shape.width + 2 * PAD, shape.height + 2 * PAD
    out = [
        f'<svg class="bgtask-workflow" role="img" aria-label="workflow steps" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">'
    ]
    for x, y, what in shape.parts:
        x, y = x + PAD, y + PAD
        if isinstance(what, tuple) and what[0] == "arrow":
            length = what[1]
            out.append(
                f'<line x1="{x + 2}" y1="{y}" x2="{x + length - 4}" y2="{y}" stroke="#666"/>'
                f'<polygon points="{x + length - 4},{y - 4} {x + length},{y} '
                f'{x + length - 4},{y + 4}" fill="#666"/>'
            )
        elif isinstance(what, tuple) and what[0] == "label":
            out.append(f'<text x="{x}" y="{y + 11}" fill="#666">{escape(what[1])}</text>')
        elif isinstance(what, str):
            out.append(
                f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="4" '
                f'fill="#f4f4f4" stroke="#999" stroke-dasharray="3 2"/>'
                f'<text x="{x + 6}" y="{y + 23}">{escape(what[:34])}</text>'
            )
        else:
            color = COLORS.get(what.status, "#d9d9d9")
            title = f"{what.task_name} ({what.status}) {what.task_id or ''}"
            out.append(
                f'<g class="bgtask-step bgtask-{escape(what.status)}">'
                f"<title>{escape(title)}</title>"
                f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="4" '
                f'fill="{color}" fill-opacity="0.25" stroke="{color}"/>'
                f'<text x="{x + 6}" y="{y + 15}">{escape(_short(what.task_name))}</text>'
                f'<text x="{x + 6}" y="{y + 30}" fill="#444">{escape(what.status)}</text></g>'
            )
    out.append("</svg>")
    return mark_safe("".join(out))
