"""Server-side SVG charts: pure functions from numbers to markup, so pages need no JavaScript, no
CDN, and the charts can be unit-tested as text. Time axes are UTC clock times."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")
MARKER_COLOURS = {"change": "#dc2626", "activation": "#2563eb", "rollback": "#ea580c",
                  "reload": "#9333ea", "load_failure": "#b91c1c"}


@dataclass(frozen=True)
class Line:
    label: str
    ts: Sequence[float]
    values: Sequence[float | None]   # None / NaN = gap


@dataclass(frozen=True)
class Marker:
    ts: float
    label: str
    kind: str   # change | activation | rollback | reload | load_failure


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1-2-5 steps)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = [round(start, 12)]
    while ticks[-1] < hi - step * 1e-9:  # the top tick is at or above the highest value
        ticks.append(round(ticks[-1] + step, 12))
    if len(ticks) == 1:
        ticks.append(round(start + step, 12))
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.3f}".rstrip("0").rstrip(".")


def _clock(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%H:%M:%S")


def line_chart(lines: Sequence[Line], *, title: str, unit: str, markers: Sequence[Marker] = (),
               width: int = 760, height: int = 220, y_min: float | None = 0.0) -> str:
    left, right, top, bottom = 58, 16, 28, 34
    pw, ph = width - left - right, height - top - bottom
    pts = [(t, v) for ln in lines for t, v in zip(ln.ts, ln.values) if _finite(v)]
    xs = [t for ln in lines for t in ln.ts] + [m.ts for m in markers]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'width="100%" viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet">',
             f'<title>{escape(title)}</title>',
             f'<text x="{left}" y="16" class="chart-title">{escape(title)} '
             f'<tspan class="unit">({escape(unit)})</tspan></text>']
    if not pts or not xs:
        parts.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" '
                     f'class="nodata">no data yet</text></svg>')
        return "".join(parts)
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x1 = x0 + 1
    vals = [v for _, v in pts]
    lo = min(vals) if y_min is None else min(y_min, min(vals))
    hi = max(vals)
    ticks = nice_ticks(lo, hi if hi > lo else lo + 1)
    y0, y1 = ticks[0], ticks[-1]

    def sx(t: float) -> float:
        return left + (t - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return top + ph - (v - y0) / (y1 - y0) * ph

    for v in ticks:  # horizontal grid with value labels
        y = sy(v)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(v)}</text>')
    for k in range(5):  # time labels
        t = x0 + (x1 - x0) * k / 4
        parts.append(f'<text x="{sx(t):.1f}" y="{height - 10}" text-anchor="middle" '
                     f'class="tick">{_clock(t)}</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" class="axis"/>'
                 f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>')
    for i, ln in enumerate(lines):
        colour = PALETTE[i % len(PALETTE)]
        segments, current = [], []
        for t, v in zip(ln.ts, ln.values):
            if _finite(v):
                current.append(f"{sx(t):.1f},{sy(v):.1f}")
            elif current:
                segments.append(current)
                current = []
        if current:
            segments.append(current)
        for seg in segments:
            if len(seg) == 1:
                x, y = seg[0].split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="2" fill="{colour}"/>')
            else:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" '
                             f'points="{" ".join(seg)}"/>')
        lx = left + 8 + i * 110
        parts.append(f'<rect x="{lx}" y="{top + 4}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{lx + 14}" y="{top + 13}" class="legend">{escape(ln.label)}</text>')
    for j, m in enumerate(sorted(markers, key=lambda m: m.ts)):
        x = sx(m.ts)
        colour = MARKER_COLOURS.get(m.kind, "#111827")
        ly = top + 28 + (j % 4) * 12  # stagger labels so neighbours stay readable
        # labels in the right half go left of their line so they stay inside the plot
        anchor, dx = ("end", -3) if x > left + pw / 2 else ("start", 3)
        parts.append(f'<g class="marker marker-{escape(m.kind)}"><line x1="{x:.1f}" x2="{x:.1f}" '
                     f'y1="{top}" y2="{top + ph}" stroke="{colour}" stroke-dasharray="4 3"/>'
                     f'<text x="{x + dx:.1f}" y="{ly}" fill="{colour}" text-anchor="{anchor}" '
                     f'class="marker-label">{escape(m.label)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def sparkline(values: Sequence[float | None], width: int = 140, height: int = 28,
              colour: str = PALETTE[0]) -> str:
    vals = [v if _finite(v) else None for v in values]
    finite = [v for v in vals if v is not None]
    if len(finite) < 2:
        return f'<svg class="spark" width="{width}" height="{height}"></svg>'
    lo, hi = min(finite), max(finite)
    span = hi - lo or 1.0
    step = width / max(len(vals) - 1, 1)
    pts = " ".join(f"{i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}"
                   for i, v in enumerate(vals) if v is not None)
    return (f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}"><polyline fill="none" stroke="{colour}" stroke-width="1.4" '
            f'points="{pts}"/></svg>')
