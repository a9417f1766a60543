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
# Whose label keeps its place when a chart is crowded: what changed and what was done about it
# first, the activations (their lines stay, their text is on hover) last.
MARKER_PRIORITY = {"change": 0, "rollback": 1, "reload": 1, "load_failure": 1, "activation": 2}


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


def _clock(ts: float, seconds: bool = True) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%H:%M:%S" if seconds else "%H:%M")


# ------------------------------------------------------------------ text layout
#
# SVG text is laid out here, before any browser sees it, so its boxes are estimated: per-character
# advance widths in em, rounded up from DejaVu Sans Bold (the widest of the common UI fonts; Debian's
# Chromium draws system-ui with it). Narrower fonts only leave more room between the boxes.

_NARROW, _SLIM, _WIDE = set(" ijl.,:;'|!I"), set("frt()[]/\\-\"*_`"), set("mwMW%@&")


def text_width(text: str, size: float) -> float:
    """An upper estimate of the rendered width of `text` at font size `size` (px)."""
    em = 0.0
    for ch in text:
        if ch in _NARROW:
            em += 0.40
        elif ch in _SLIM:
            em += 0.53
        elif ch in _WIDE:
            em += 1.12
        elif not ch.isascii():
            em += 1.0  # arrows, ✔, Δ, …
        elif ch.isupper():
            em += 0.86
        else:
            em += 0.73
    return em * size + 1.0


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle: top-left corner, width and height (SVG user units)."""
    x: float
    y: float
    w: float
    h: float

    def overlaps(self, other: "Box", gap: float = 0.0) -> bool:
        return not (self.x + self.w + gap <= other.x or other.x + other.w + gap <= self.x
                    or self.y + self.h + gap <= other.y or other.y + other.h + gap <= self.y)

    def inside(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        return self.x >= x0 and self.y >= y0 and self.x + self.w <= x1 and self.y + self.h <= y1


@dataclass(frozen=True)
class Label:
    """A piece of text and where it goes: x/y are SVG text coordinates (y is the baseline), `box`
    is the area it covers."""
    text: str
    x: float
    y: float
    anchor: str  # start | middle | end
    box: Box


def _label(text: str, x: float, baseline: float, anchor: str, size: float) -> Label:
    w = text_width(text, size)
    left = {"start": x, "middle": x - w / 2, "end": x - w}[anchor]
    # ascent ~0.8 em above the baseline, descent ~0.25 em below (DejaVu: 0.93 / 0.24 of 1.16)
    return Label(text, x, baseline, anchor, Box(left, baseline - 0.85 * size, w, 1.15 * size))


LEGEND_SIZE, TICK_SIZE, MARKER_SIZE, TITLE_SIZE = 11.0, 10.0, 10.0, 13.0
SWATCH = 10.0


def legend_layout(labels: Sequence[str], *, left: float, right: float, top: float,
                  row_h: float = 14.0, size: float = LEGEND_SIZE) -> list[Label]:
    """Legend entries left to right from (left, top), wrapping before `right`. Each label's box
    includes its colour swatch (SWATCH wide, 4 px before the text)."""
    out: list[Label] = []
    x, row = left, 0
    for text in labels:
        w = SWATCH + 4 + text_width(text, size)
        if x > left and x + w > right:
            x, row = left, row + 1
        baseline = top + row * row_h + 10
        lab = _label(text, x + SWATCH + 4, baseline, "start", size)
        box = Box(x, min(lab.box.y, baseline - SWATCH + 1), w, row_h - 2)
        out.append(Label(text, lab.x, baseline, "start", box))
        x += w + 14
    return out


def marker_label_layout(items: Sequence[tuple[float, str]], *, x_min: float, x_max: float,
                        y_top: float, lanes: int, lane_h: float = 12.0,
                        size: float = MARKER_SIZE, avoid: Sequence[Box] = (),
                        priority: Sequence[int] | None = None) -> list[Label | None]:
    """Place one label beside each marker line at x (items in any order, results in the same
    order). A label sits right of its line, or left of it in the right half, in the first of
    `lanes` rows where it overlaps no other label nor anything in `avoid`, and stays within
    [x_min, x_max]. A label that fits nowhere is None: the caller keeps the line and shows the text
    on hover. Labels with a lower `priority` number are placed first, so when space runs out the
    least important ones are the ones left off."""
    placed: list[Box] = list(avoid)
    out: list[Label | None] = [None] * len(items)
    rank = list(priority) if priority is not None else [0] * len(items)
    for i in sorted(range(len(items)), key=lambda k: (rank[k], items[k][0])):
        x, text = items[i]
        w = text_width(text, size)
        sides = [("start", x + 3), ("end", x - 3)]
        if x > (x_min + x_max) / 2:
            sides.reverse()
        for lane in range(lanes):
            baseline = y_top + lane * lane_h + 0.85 * size + 1
            for anchor, tx in sides:
                lab = _label(text, tx, baseline, anchor, size)
                if lab.box.x < x_min or lab.box.x + w > x_max:
                    continue
                if any(lab.box.overlaps(b, gap=2.0) for b in placed):
                    continue
                out[i] = lab
                placed.append(lab.box)
                break
            if out[i] is not None:
                break
    return out


_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
               43200, 86400)


def time_ticks(t0: float, t1: float, max_ticks: int = 6) -> list[float]:
    """Round UTC clock times within [t0, t1]: multiples of the smallest step in _TIME_STEPS that
    gives at most max_ticks of them (at least one tick: t0 when the span is tiny)."""
    if not (math.isfinite(t0) and math.isfinite(t1)) or t1 < t0:
        return []
    for step in _TIME_STEPS:
        first = math.ceil(t0 / step) * step
        n = int((t1 - first) // step) + 1 if first <= t1 else 0
        if n <= max_ticks:
            break
    ticks = [first + k * step for k in range(n)]
    return ticks or [t0]


def time_label_layout(ticks: Sequence[float], xs: Sequence[float], *, baseline: float,
                      x_min: float, x_max: float, size: float = TICK_SIZE) -> list[Label]:
    """Clock labels centred under their ticks, shifted inward where the first or last would cross
    [x_min, x_max] (the SVG's edges), so none is clipped. Whole minutes drop the seconds."""
    seconds = any(t % 60 for t in ticks)
    out = []
    for t, x in zip(ticks, xs):
        text = _clock(t, seconds)
        w = text_width(text, size)
        cx = min(max(x, x_min + w / 2), x_max - w / 2)
        out.append(_label(text, cx, baseline, "middle", size))
    return out


# ------------------------------------------------------------------ charts


def _merge_markers(markers: Sequence[Marker], x_of,
                   within_px: float = 6.0) -> list[tuple[float, str, str, list[str]]]:
    """Markers of one kind closer than within_px on the chart become one: (x, kind, label, all
    labels). Repeated labels (two detectors on one signal) are said once."""
    groups: list[tuple[float, str, list[str]]] = []
    for m in sorted(markers, key=lambda m: m.ts):
        x = x_of(m.ts)
        same = next((g for g in reversed(groups) if g[1] == m.kind and x - g[0] <= within_px), None)
        if same is None:
            groups.append((x, m.kind, [m.label]))
        elif m.label not in same[2]:
            same[2].append(m.label)
    return [(x, kind, labels[0] if len(labels) == 1 else f"{labels[0]} +{len(labels) - 1}", labels)
            for x, kind, labels in groups]


def line_chart(lines: Sequence[Line], *, title: str, unit: str, markers: Sequence[Marker] = (),
               width: int = 640, height: int = 230, y_min: float | None = 0.0) -> str:
    left, right, bottom = 58, 16, 30
    title_base = 17
    legend = legend_layout([ln.label for ln in lines], left=left, right=width - right, top=24)
    rows = 1 + max((round((lab.y - 24 - 10) / 14) for lab in legend), default=-1)
    top = 28 + rows * 14 + 4  # the legend's rows sit between the title and the plot
    pw, ph = width - left - right, height - top - bottom
    pts = [(t, v) for ln in lines for t, v in zip(ln.ts, ln.values) if _finite(v)]
    xs = [t for ln in lines for t in ln.ts] + [m.ts for m in markers]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'width="100%" viewBox="0 0 {width} {height}" preserveAspectRatio="xMinYMin meet">',
             f'<title>{escape(title)} ({escape(unit)})</title>',
             f'<text x="{left}" y="{title_base}" class="chart-title">{escape(title)} '
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
    label_w = text_width("00:00:00", TICK_SIZE) + 16
    tt = time_ticks(x0, x1, max_ticks=max(2, min(8, int(pw // label_w))))
    for t, lab in zip(tt, time_label_layout(tt, [sx(t) for t in tt], baseline=height - 10,
                                            x_min=0, x_max=width)):
        parts.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top + ph}" y2="{top + ph + 4}" '
                     f'class="axis"/><text x="{lab.x:.1f}" y="{lab.y}" text-anchor="middle" '
                     f'class="tick">{escape(lab.text)}</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" class="axis"/>'
                 f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>')
    for i, (ln, lab) in enumerate(zip(lines, legend)):
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
        parts.append(f'<g class="legend-item"><rect x="{lab.box.x:.1f}" y="{lab.y - SWATCH + 1:.1f}" '
                     f'width="{SWATCH:g}" height="{SWATCH:g}" fill="{colour}"/>'
                     f'<text x="{lab.x:.1f}" y="{lab.y:.1f}" class="legend">{escape(lab.text)}</text></g>')
    merged = _merge_markers(markers, sx)
    lanes = max(1, min(5, int(ph * 0.6 // 12)))
    places = marker_label_layout([(x, text) for x, _, text, _ in merged], x_min=left + 1,
                                 x_max=left + pw - 1, y_top=top + 2, lanes=lanes,
                                 avoid=[lab.box for lab in legend],
                                 priority=[MARKER_PRIORITY.get(kind, 2) for _, kind, _, _ in merged])
    for (x, kind, _, labels), lab in zip(merged, places):
        colour = MARKER_COLOURS.get(kind, "#111827")
        text = "" if lab is None else (
            f'<text x="{lab.x:.1f}" y="{lab.y:.1f}" fill="{colour}" text-anchor="{lab.anchor}" '
            f'class="marker-label">{escape(lab.text)}</text>')
        parts.append(f'<g class="marker marker-{escape(kind)}"><title>{escape("; ".join(labels))}'
                     f'</title><line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" '
                     f'stroke="{colour}" stroke-dasharray="4 3"/>{text}</g>')
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
    # the viewBox lets a narrow page draw it smaller (CSS width) without cutting it off
    return (f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" preserveAspectRatio="none">'
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.4" '
            f'points="{pts}" vector-effect="non-scaling-stroke"/></svg>')
