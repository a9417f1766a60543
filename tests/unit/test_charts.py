"""Chart layout: marker labels never overlap each other or the legend, and no text leaves the SVG.
The pure layout functions are checked directly, and line_chart's output is parsed back into boxes
(with the same width estimate) so a chart that stops using the layout fails here too."""
import math
import random
import re
import xml.etree.ElementTree as ET

import pytest

from monitor.charts import (LEGEND_SIZE, MARKER_SIZE, TICK_SIZE, Box, Line, Marker, _label,
                            legend_layout, line_chart, marker_label_layout, text_width,
                            time_label_layout, time_ticks)

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_795_999_980.0  # a whole UTC minute; charts print clock times

# Advance widths in em of DejaVu Sans Bold (what Debian's Chromium draws system-ui with), measured
# in Chromium with canvas measureText at 100 px. text_width must never be below them.
DEJAVU_BOLD_EM = {
    " ": 0.348, "(": 0.457, ")": 0.457, "+": 0.838, "-": 0.415, ".": 0.38, ":": 0.4, "_": 0.5,
    "0": 0.696, "1": 0.696, "2": 0.696, "3": 0.696, "4": 0.696, "5": 0.696, "6": 0.696,
    "7": 0.696, "8": 0.696, "9": 0.696, "a": 0.675, "b": 0.716, "c": 0.593, "d": 0.716,
    "e": 0.678, "f": 0.435, "g": 0.716, "h": 0.712, "i": 0.343, "k": 0.665, "l": 0.343,
    "m": 1.042, "n": 0.712, "o": 0.687, "p": 0.716, "r": 0.493, "s": 0.595, "t": 0.478,
    "u": 0.712, "v": 0.652, "w": 0.924, "y": 0.652, "↑": 0.838, "↓": 0.838, "→": 0.838,
}


def _labels(n: int, rng: random.Random) -> list[str]:
    kinds = ["change: error_rate ↑ (v2)", "v12 activated", "rollback → v1 (ok)",
             "change: score_mean ↓ (v3) +2", "reload → v4 (failed)", "v7 failed to load"]
    return [rng.choice(kinds) for _ in range(n)]


@pytest.mark.parametrize("text", ["change: error_rate ↑ (v2)", "rollback → v1 (ok)",
                                  "v12 activated", "change: latency_ms ↓ (v3) +2", "01:39:35"])
def test_text_width_is_not_below_the_widest_common_font(text):
    measured = sum(DEJAVU_BOLD_EM[c] for c in text) * MARKER_SIZE
    assert text_width(text, MARKER_SIZE) >= measured


def test_boxes_overlap_only_when_they_share_area():
    a = Box(0, 0, 10, 10)
    assert a.overlaps(Box(5, 5, 10, 10)) and not a.overlaps(Box(10, 0, 5, 5))
    assert a.overlaps(Box(11, 0, 5, 5), gap=2) and not a.overlaps(Box(13, 0, 5, 5), gap=2)


@pytest.mark.parametrize("seed", range(20))
def test_marker_labels_never_overlap_and_stay_in_the_plot(seed):
    rng = random.Random(seed)
    x_min, x_max = 58.0, 624.0
    legend = legend_layout(["v1 queue", "v1 compute", "v2 queue", "v2 compute"], left=58,
                           right=624, top=24)
    # crowded: many lines within a few pixels of each other, some at the plot's edges
    xs = [rng.choice([x_min, x_max, rng.uniform(x_min, x_max), 300 + rng.uniform(-8, 8)])
          for _ in range(rng.randint(1, 30))]
    items = list(zip(xs, _labels(len(xs), rng)))
    placed = marker_label_layout(items, x_min=x_min, x_max=x_max, y_top=48, lanes=5,
                                 avoid=[lab.box for lab in legend])
    assert len(placed) == len(items)
    boxes = [p.box for p in placed if p is not None]
    assert boxes, "nothing placed"
    for i, b in enumerate(boxes):
        assert b.inside(x_min, 48, x_max, 48 + 5 * 12 + 2), b
        assert not any(b.overlaps(lab.box) for lab in legend)
        assert not any(b.overlaps(c) for c in boxes[i + 1:])
    for (x, text), p in zip(items, placed):  # each label touches its own line
        if p is not None:
            assert p.text == text
            assert min(abs(p.box.x - x), abs(p.box.x + p.box.w - x)) <= 4


def test_a_lone_marker_always_gets_its_label_beside_its_line():
    for x in (58.0, 200.0, 500.0, 624.0):
        [p] = marker_label_layout([(x, "rollback → v1 (ok)")], x_min=58, x_max=624, y_top=48,
                                  lanes=1)
        assert p is not None and p.box.x >= 58 and p.box.x + p.box.w <= 624
        assert p.anchor == ("start" if x < 341 else "end")


def test_legend_wraps_inside_its_width_without_overlaps():
    labels = [f"v{k} {s}" for k in (1, 2, 123, 4, 5) for s in ("queue", "compute", "std")]
    labels += ["v1 error_rate_backend", "v2 error_rate_rejected", "v3"]
    legend = legend_layout(labels, left=58, right=624, top=24)
    assert len({lab.y for lab in legend}) > 1, "18 entries fit on one row of 566 px?"
    for i, lab in enumerate(legend):
        assert lab.box.x >= 58 and lab.box.x + lab.box.w <= 624
        assert not any(lab.box.overlaps(o.box) for o in legend[i + 1:])


@pytest.mark.parametrize("span", [3, 50, 299, 900, 3600, 86_400])
def test_time_ticks_are_round_clock_times_within_the_span(span):
    t0 = T0 + 17.3
    ticks = time_ticks(t0, t0 + span, max_ticks=6)
    assert 1 <= len(ticks) <= 6
    assert all(t0 <= t <= t0 + span for t in ticks)
    steps = {round(b - a, 6) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) <= 1
    if steps:
        step = steps.pop()
        assert all(t % step == 0 for t in ticks)


@pytest.mark.parametrize("offset,pattern", [(0, r"\d\d:\d\d"), (5, r"\d\d:\d\d:\d\d")])
def test_the_last_time_label_is_not_clipped(offset, pattern):
    width, right = 640, 16
    ticks = [T0 + offset, T0 + offset + 60, T0 + offset + 120]
    xs = [58.0, 341.0, width - right]  # the last tick on the plot's right edge
    labels = time_label_layout(ticks, xs, baseline=220, x_min=0, x_max=width)
    assert all(re.fullmatch(pattern, lab.text) for lab in labels)  # seconds only when needed
    for lab in labels:
        assert lab.box.inside(0, 0, width, 230), lab
    assert labels[-1].box.x + labels[-1].box.w <= width


# ------------------------------------------------------------------ line_chart, parsed back


def _text_boxes(svg: str) -> tuple[ET.Element, dict[str, list]]:
    root = ET.fromstring(svg)
    sizes = {"marker-label": MARKER_SIZE, "tick": TICK_SIZE, "legend": LEGEND_SIZE}
    out: dict[str, list] = {k: [] for k in sizes}
    for t in root.iter(f"{SVG}text"):
        cls = t.get("class")
        if cls in sizes:
            text = "".join(t.itertext())
            lab = _label(text, float(t.get("x")), float(t.get("y")),
                         t.get("text-anchor") or "start", sizes[cls])
            out[cls].append(lab)
    return root, out


def _crowded_chart(n_markers: int, seed: int = 0, width: int = 640) -> str:
    rng = random.Random(seed)
    ts = [T0 + 2 * i for i in range(450)]
    lines = [Line(f"v{k} {s}", ts, [5 + k + (i % 7) for i in range(450)])
             for k in (1, 2, 12) for s in ("queue", "compute")]
    kinds = ["change", "activation", "rollback", "reload", "load_failure"]
    marks = [Marker(T0 + rng.choice([0, 899, 400 + rng.uniform(-10, 10), rng.uniform(0, 899)]),
                    text, rng.choice(kinds)) for text in _labels(n_markers, rng)]
    return line_chart(lines, title="Queue vs compute", unit="ms per request", markers=marks,
                      width=width)


@pytest.mark.parametrize("n_markers,seed,width", [(1, 0, 640), (3, 1, 640), (8, 2, 640),
                                                  (25, 3, 640), (12, 4, 420), (6, 5, 900)])
def test_line_chart_text_boxes_do_not_overlap_and_stay_in_the_viewbox(n_markers, seed, width):
    root, boxes = _text_boxes(_crowded_chart(n_markers, seed, width))
    _, _, vw, vh = (float(v) for v in root.get("viewBox").split())
    markers, ticks, legend = boxes["marker-label"], boxes["tick"], boxes["legend"]
    assert markers, "no marker label drawn"
    assert len(root.findall(f".//{SVG}g[@class]")) >= 1
    for group in (markers, ticks, legend):
        for lab in group:
            assert lab.box.inside(0, 0, vw, vh), (lab.text, lab.box)
    for i, lab in enumerate(markers):
        assert not any(lab.box.overlaps(o.box) for o in markers[i + 1:]), lab.text
        assert not any(lab.box.overlaps(o.box) for o in legend), lab.text
    time_labels = [lab for lab in ticks if ":" in lab.text]
    assert len(time_labels) >= 2
    for i, lab in enumerate(time_labels):
        assert not any(lab.box.overlaps(o.box) for o in time_labels[i + 1:])


def test_every_marker_keeps_its_line_and_says_its_label_on_hover():
    svg = _crowded_chart(25, seed=3)
    root = ET.fromstring(svg)
    groups = [g for g in root.iter(f"{SVG}g") if (g.get("class") or "").startswith("marker ")]
    titles = " ".join(g.find(f"{SVG}title").text for g in groups)
    assert all(g.find(f"{SVG}line") is not None for g in groups)
    for label in {"change: error_rate ↑ (v2)", "v12 activated", "rollback → v1 (ok)"}:
        if label in svg:
            assert label in titles


def test_markers_of_one_kind_at_one_place_share_a_label():
    ts = [T0 + 2 * i for i in range(450)]
    marks = [Marker(T0 + 400, "change: error_rate ↑ (v2)", "change"),
             Marker(T0 + 401, "change: error_rate ↑ (v2)", "change"),  # two detectors, one signal
             Marker(T0 + 402, "change: latency_ms ↑ (v2)", "change")]
    svg = line_chart([Line("v1", ts, [1.0] * 450)], title="t", unit="u", markers=marks)
    _, boxes = _text_boxes(svg)
    assert [lab.text for lab in boxes["marker-label"]] == ["change: error_rate ↑ (v2) +1"]
    assert "change: error_rate ↑ (v2); change: latency_ms ↑ (v2)" in svg


def test_no_data_chart_and_gaps():
    assert "no data yet" in line_chart([], title="t", unit="u")
    svg = line_chart([Line("v1", [T0, T0 + 1, T0 + 2], [1.0, math.nan, None])], title="t", unit="u")
    assert "<circle" in svg and "<polyline" not in svg


def test_a_crowded_chart_keeps_the_change_and_the_rollback_labels():
    # What the model page looked like in CI: two activations, the change and the rollback within a
    # few seconds at the right edge of a half-width chart. The activations' text may go to hover;
    # what changed and what was done about it must stay written.
    ts = [T0 + i for i in range(300)]
    marks = [Marker(T0 + 2, "v1 activated", "activation"),
             Marker(T0 + 280, "v2 activated", "activation"),
             Marker(T0 + 283, "change: error_rate ↑ (v2)", "change"),
             Marker(T0 + 284, "v1 activated", "activation"),
             Marker(T0 + 286, "rollback → v1 (ok)", "rollback")]
    lines = [Line(f"v{k}", ts, [float(k)] * 300) for k in (1, 2)]
    svg = line_chart(lines, title="Request rate", unit="req/s", markers=marks, width=460, height=170)
    _, boxes = _text_boxes(svg)
    written = [lab.text for lab in boxes["marker-label"]]
    assert "change: error_rate ↑ (v2)" in written and "rollback → v1 (ok)" in written, written
