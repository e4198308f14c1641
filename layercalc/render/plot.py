"""A sweep as an SVG plot (three panels sharing the swept axis) or as tsv/csv/markdown columns."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from .formats import human, table_text

WIDTH, PANEL, LEFT, RIGHT, TOP, GAP = 720, 170, 80, 20, 60, 50
SERIES = (  # key, title with unit, colour
    ("macs", "MACs (multiply-accumulates)", "#d9632c"),
    ("params", "parameters (count)", "#2f6fdf"),
    ("memory_bytes", "memory (bytes: input, activations, params, KV cache)", "#2da44e"),
)
X_LABELS = {"T": "sequence length T (tokens)", "batch": "batch (samples)", "side": "image side (pixels)"}


def _log(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > 100


def _scale(values: list[float], log: bool, low_px: float, high_px: float) -> tuple[Any, list[float]]:
    """A map from data to pixels over the values' range, and its tick values."""
    lo, hi = min(values), max(values)
    if log:
        lo, hi = math.log10(max(lo, 1e-300)), math.log10(max(hi, 1e-300))
        ticks = [10.0**e for e in range(math.floor(lo), math.ceil(hi) + 1)]
        lo, hi = math.floor(lo), math.ceil(hi)
        pos = lambda v: low_px + (math.log10(max(v, 1e-300)) - lo) / ((hi - lo) or 1) * (high_px - low_px)  # noqa: E731
        return pos, ticks
    lo = min(lo, 0.0)
    hi = hi if hi > lo else lo + 1
    ticks = [lo + (hi - lo) * i / 4 for i in range(5)]
    return (lambda v: low_px + (v - lo) / (hi - lo) * (high_px - low_px)), ticks


def sweep_svg(data: dict[str, Any]) -> str:
    """The sweep as one SVG: MACs, params and memory against the swept value, axes labelled with units."""
    xs = [float(v) for v in data["values"]]
    x_log = _log(xs)
    xpos, xticks = _scale(xs, x_log, LEFT, WIDTH - RIGHT)
    height = TOP + len(SERIES) * (PANEL + GAP) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
           f'height="{height}" font-family="sans-serif" font-size="11">',
           f'<title>{escape(data["name"])}: sweep of {escape(data["sweep"])}</title>',
           f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(data["name"])}: '
           f'MACs, parameters and memory against {escape(X_LABELS[data["sweep"]])}</text>']
    for i, (key, title, colour) in enumerate(SERIES):  # the legend: one entry a series
        out.append(f'<rect x="{LEFT + i * 200}" y="32" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{LEFT + i * 200 + 14}" y="41">{escape(title.split(" (")[0])}</text>')
    for i, (key, title, colour) in enumerate(SERIES):
        top = TOP + i * (PANEL + GAP) + 20
        out += _panel(xs, [float(v) for v in data["series"][key]], xpos, xticks, x_log, top, title, colour,
                      X_LABELS[data["sweep"]])
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _panel(xs: list[float], ys: list[float], xpos: Any, xticks: list[float], x_log: bool, top: float, title: str,
           colour: str, xlabel: str) -> list[str]:
    """One panel: its frame, ticks, axis labels and the series as a line with points."""
    bottom = top + PANEL
    y_log = _log(ys)
    ypos, yticks = _scale(ys, y_log, bottom, top)
    out = [f'<text x="{LEFT}" y="{top - 6}" font-weight="bold">{escape(title)}{" (log)" if y_log else ""}</text>',
           f'<rect x="{LEFT}" y="{top}" width="{WIDTH - LEFT - RIGHT}" height="{PANEL}" fill="none" stroke="#888"/>']
    for t in yticks:
        y = ypos(t)
        out.append(f'<line x1="{LEFT - 4}" y1="{y:.1f}" x2="{LEFT}" y2="{y:.1f}" stroke="#888"/>'
                   f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(human(t))}</text>')
    for t in xticks:
        x = xpos(t)
        out.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#888"/>'
                   f'<text x="{x:.1f}" y="{bottom + 15}" text-anchor="middle">{escape(human(t))}</text>')
    out.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{bottom + 30}" text-anchor="middle">'
               f'{escape(xlabel)}{" (log)" if x_log else ""}</text>')
    points = " ".join(f"{xpos(x):.1f},{ypos(y):.1f}" for x, y in zip(xs, ys))
    out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
    out += [f'<circle cx="{xpos(x):.1f}" cy="{ypos(y):.1f}" r="3" fill="{colour}"><title>{x:g}: {y:,.0f}</title></circle>'
            for x, y in zip(xs, ys)]
    return out


def sweep_text(fmt: str, data: dict[str, Any]) -> str:
    """The same series as columns: the swept value, params, MACs, memory bytes."""
    s = data["series"]
    rows = ([str(v), str(p), str(m), str(b)] for v, p, m, b in zip(data["values"], s["params"], s["macs"],
                                                                     s["memory_bytes"]))
    return table_text(fmt, (data["sweep"], "params", "macs", "memory_bytes"), rows)


def write_sweep(data: dict[str, Any], page: Any) -> None:
    """A sweep's series as columns (a table for people is the same columns, space-aligned)."""
    if page.format != "table":
        page.file.write(sweep_text(page.format, data))
        return
    rows = [line.split("\t") for line in sweep_text("tsv", data).splitlines()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    page.file.write("\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows) + "\n")
