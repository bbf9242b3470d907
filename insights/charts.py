"""Inline SVG charts for the dashboards: bars (with an optional reference series) and lines. No external assets.

Every label goes through `escape`, so names and periods from the database cannot inject markup.
"""

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 16, 48
INK, MUTED, ACCENT, REFERENCE = "#1d2330", "#5d6576", "#2455c3", "#b7c4e4"


def _frame(body: list[str], title: str) -> SafeString:
    return mark_safe(  # noqa: S308 - every interpolated text below is escaped
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _axis(top_value: float, fmt: str) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" stroke="{MUTED}"/>']
    for fraction in (0.5, 1.0):
        y = HEIGHT - BOTTOM - plot_h * fraction
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e4e7ee"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{MUTED}">'
            f"{escape(format(top_value * fraction, fmt))}</text>"
        )
    return parts


def _wrap(label: str, width: int, max_lines: int = 2) -> list[str]:
    """Split a label into at most `max_lines` lines of about `width` characters, at spaces."""
    lines: list[str] = []
    for word in label.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], " ".join(lines[max_lines - 1 :])]
    return lines or [""]


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    reference: Sequence[float] | None = None,
    reference_name: str = "",
    fmt: str = ".0f",
    top: float | None = None,
) -> SafeString:
    """Vertical bars, one per label; `reference` draws a paler bar beside each (e.g. the paper's figures)."""
    peak = top or max([*values, *(reference or []), 0]) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(labels), 1)
    bar_w = slot * (0.35 if reference is not None else 0.6)
    body = _axis(peak, fmt)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = LEFT + i * slot + slot * 0.15
        h = plot_h * value / peak
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{HEIGHT - BOTTOM - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
            f'fill="{ACCENT}"><title>{escape(label)}: {escape(format(value, fmt))}</title></rect>'
        )
        if reference is not None:
            ref_h = plot_h * reference[i] / peak
            body.append(
                f'<rect class="reference" x="{x + bar_w + 2:.1f}" y="{HEIGHT - BOTTOM - ref_h:.1f}" '
                f'width="{bar_w:.1f}" height="{ref_h:.1f}" fill="{REFERENCE}">'
                f"<title>{escape(reference_name)} {escape(label)}: {escape(format(reference[i], fmt))}</title></rect>"
            )
        centre = LEFT + i * slot + slot / 2
        lines = "".join(
            f'<tspan x="{centre:.1f}" dy="{0 if n == 0 else 13}">{escape(line)}</tspan>'
            for n, line in enumerate(_wrap(label, max(int(slot / 6.5), 8)))
        )
        body.append(f'<text y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11" fill="{INK}">{lines}</text>')
    if reference is not None:
        body.append(
            f'<rect x="{WIDTH - RIGHT - 190}" y="{HEIGHT - 18}" width="10" height="10" fill="{ACCENT}"/>'
            f'<text x="{WIDTH - RIGHT - 176}" y="{HEIGHT - 9}" font-size="11" fill="{INK}">ours</text>'
            f'<rect x="{WIDTH - RIGHT - 130}" y="{HEIGHT - 18}" width="10" height="10" fill="{REFERENCE}"/>'
            f'<text x="{WIDTH - RIGHT - 116}" y="{HEIGHT - 9}" font-size="11" fill="{INK}">'
            f"{escape(reference_name)}</text>"
        )
    return _frame(body, title)


def line_chart(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    fmt: str = ".2f",
    top: float | None = None,
    reference: float | None = None,
) -> SafeString:
    """A line over evenly spaced labels (gaps where a value is None); `reference` draws a dashed level."""
    present = [v for v in values if v is not None]
    peak = top or max([*present, reference or 0, 0]) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(labels) - 1, 1)
    body = _axis(peak, fmt)
    if reference is not None:
        y = HEIGHT - BOTTOM - plot_h * reference / peak
        body.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="{MUTED}" stroke-dasharray="4 3"/>'
        )
    points = []
    for i, value in enumerate(values):
        if value is None:
            continue
        x, y = LEFT + i * step, HEIGHT - BOTTOM - plot_h * value / peak
        points.append(f"{x:.1f},{y:.1f}")
        body.append(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{ACCENT}">'
            f"<title>{escape(labels[i])}: {escape(format(value, fmt))}</title></circle>"
        )
    if len(points) > 1:
        body.insert(0, f'<polyline points="{" ".join(points)}" fill="none" stroke="{ACCENT}" stroke-width="2"/>')
    every = max(len(labels) // 6, 1)
    for i in range(0, len(labels), every):
        body.append(
            f'<text x="{LEFT + i * step:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="10" '
            f'fill="{INK}">{escape(labels[i][:16])}</text>'
        )
    return _frame(body, title)


NODE_W, NODE_H, COLUMN_GAP, ROW_GAP, LANE_GAP, MARGIN = 210, 84, 56, 16, 10, 8
NODE_FILL = {"batch": "#eef3fd", "export": "#f3f5f8", "training_run": "#fdf6ea", "checkpoint": "#edf7f0"}


def _rows(nodes: Sequence[dict], edges: Sequence[dict]) -> dict[str, int]:
    """Each node's row within its column, ordered by the mean row of its inputs (fewer crossing links)."""
    inputs: dict[str, list[str]] = {}
    for edge in edges:
        inputs.setdefault(edge["target"], []).append(edge["source"])
    row: dict[str, int] = {}
    for layer in sorted({node["layer"] for node in nodes}):
        column = [node["key"] for node in nodes if node["layer"] == layer]
        placed = {key: [row[source] for source in inputs.get(key, []) if source in row] for key in column}
        column.sort(key=lambda key: sum(placed[key]) / len(placed[key]) if placed[key] else -1)
        row.update({key: index for index, key in enumerate(column)})
    return row


def lineage_graph(nodes: Sequence[dict], edges: Sequence[dict], *, root: str, title: str) -> SafeString:
    """A layered graph, data flowing left to right: one column per layer, each node a box that links to its page
    (`url`) and shows its `caption`, `label` and `lines`; `base` links are dashed. Every text is escaped."""
    row = _rows(nodes, edges)
    at: dict[str, tuple[float, float]] = {
        node["key"]: (MARGIN + node["layer"] * (NODE_W + COLUMN_GAP), MARGIN + row[node["key"]] * (NODE_H + ROW_GAP))
        for node in nodes
    }
    width = MARGIN * 2 + (max((n["layer"] for n in nodes), default=0) + 1) * (NODE_W + COLUMN_GAP) - COLUMN_GAP
    bottom = MARGIN + (max(row.values(), default=0) + 1) * (NODE_H + ROW_GAP) - ROW_GAP
    body = [
        '<defs><marker id="lineage-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" '
        f'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="{MUTED}"/></marker></defs>'
    ]
    lanes = 0
    for edge in edges:
        (x1, y1), (x2, y2) = at[edge["source"]], at[edge["target"]]
        x1, y1, y2 = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
        if x2 - x1 <= COLUMN_GAP:  # neighbouring columns: a curve through the gap between them
            bend = max((x2 - x1) / 2, 24)
            d = f"M{x1:.0f},{y1:.0f} C{x1 + bend:.0f},{y1:.0f} {x2 - bend:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
        else:  # past other columns: down a gap, along a lane of its own below the boxes, up the last gap
            lane, a, b = bottom + LANE_GAP * (lanes + 1), x1 + COLUMN_GAP / 2, x2 - COLUMN_GAP / 2
            lanes += 1
            d = (
                f"M{x1:.0f},{y1:.0f} C{a:.0f},{y1:.0f} {a:.0f},{lane:.0f} {a + 8:.0f},{lane:.0f} "
                f"L{b - 8:.0f},{lane:.0f} C{b:.0f},{lane:.0f} {b:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
            )
        dash = ' stroke-dasharray="5 4"' if edge["relation"] == "base" else ""
        body.append(
            f'<path class="edge" d="{d}" fill="none" stroke="{MUTED}" stroke-width="1.4"{dash} '
            f'marker-end="url(#lineage-arrow)"><title>{escape(edge["relation"])}</title></path>'
        )
    height = bottom + LANE_GAP * lanes + MARGIN
    for node in nodes:
        x, y = at[node["key"]]
        stroke, width_px = (ACCENT, 2.5) if node["key"] == root else ("#b9c0cc", 1)
        text = [
            f'<text x="{x + 10}" y="{y + 16}" font-size="10" fill="{MUTED}">{escape(node["caption"].upper())}</text>',
            f'<text x="{x + 10}" y="{y + 32}" font-size="12.5" font-weight="600" fill="{ACCENT}">'
            f"{escape(_clip(node['label'], 26))}</text>",
            *(
                f'<text x="{x + 10}" y="{y + 48 + 14 * i}" font-size="11" fill="{INK}">{escape(_clip(line, 32))}</text>'
                for i, line in enumerate(node["lines"][:3])
            ),
        ]
        body.append(
            f'<a class="node" href="{escape(node["url"])}"><title>{escape(node["label"])}: '
            f"{escape('; '.join(node['lines']))}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" '
            f'fill="{NODE_FILL.get(node["type"], "#fff")}" stroke="{stroke}" stroke-width="{width_px}"/>'
            f"{''.join(text)}</a>"
        )
    return mark_safe(  # noqa: S308 - every interpolated text above is escaped
        f'<svg class="lineage" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"
