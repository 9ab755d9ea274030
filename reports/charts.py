"""Charts as inline SVG, drawn by hand: the report opens offline, diffs cleanly, and a test can
read every chart's data back from its markup.

A chart with nothing to draw says so in the picture and carries ``data-empty="true"``, so an
empty chart can never pass for a flat line.

>>> 'data-empty="true"' in line_chart("t", [Line("a", [])], x0=0)
True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["PALETTE", "Band", "Line", "bar_chart", "line_chart"]

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
WIDTH, HEIGHT = 720, 250
LEFT, RIGHT, TOP, BOTTOM = 62, 14, 50, 42
LEGEND_Y = 34  # baseline of the legend row, under the title
_CHAR_PX = 6.2  # width of one character of the 11 px labels, near enough to lay them out
_TIME_STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)  # x ticks, seconds


@dataclass(frozen=True)
class Line:
    name: str
    points: Sequence[tuple[float, float]]
    color: str = ""
    dashed: bool = False


@dataclass(frozen=True)
class Band:
    start: float
    end: float
    label: str
    color: str = "#D55E00"


@dataclass
class _Frame:
    x_min: float
    x_max: float
    y_min: float
    y_max: float
    log: bool = False
    ticks: list[float] = field(default_factory=list)

    def x(self, v: float) -> float:
        span = self.x_max - self.x_min or 1.0
        return LEFT + (v - self.x_min) / span * (WIDTH - LEFT - RIGHT)

    def y(self, v: float) -> float:
        lo, hi, v = ((math.log10(a) for a in (self.y_min, self.y_max, max(v, self.y_min)))
                     if self.log else (self.y_min, self.y_max, v))
        span = hi - lo or 1.0
        return HEIGHT - BOTTOM - (min(max(v, lo), hi) - lo) / span * (HEIGHT - TOP - BOTTOM)


def _nice(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering lo..hi."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    base = 10 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    first = math.floor(lo / step) * step
    return [round(first + i * step, 10) for i in range(count + 3)
            if first + i * step <= hi + step * 0.999]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:.4g}"


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _svg(title: str, body: list[str], empty: bool = False) -> str:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}"'
            f' class="chart" role="img" aria-label="{escape(title)}"'
            f' data-empty="{"true" if empty else "false"}">')
    caption = f'<text x="4" y="16" class="charttitle">{escape(title)}</text>'
    return "\n".join([head, f"<title>{escape(title)}</title>", caption, *body, "</svg>"])


def _legend(entries: Sequence[tuple[str, str, bool]]) -> list[str]:
    """One row of (name, colour, dashed) swatches under the title."""
    out, x = [], float(LEFT)
    for name, color, dashed in entries:
        dash = ' stroke-dasharray="4 2"' if dashed else ""
        out.append(f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="{LEGEND_Y - 4}"'
                   f' y2="{LEGEND_Y - 4}" stroke="{color}" stroke-width="3"{dash}/>')
        out.append(f'<text x="{x + 23:.1f}" y="{LEGEND_Y}">{escape(name)}</text>')
        x += 36 + _CHAR_PX * len(name)
    return out


def _empty(title: str, reason: str) -> str:
    return _svg(title, [
        f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="nodata">'
        f"no data: {escape(reason)}</text>"], empty=True)


def _axes(frame: _Frame, y_label: str, x_ticks: list[float], x0: float) -> list[str]:
    out = []
    for v in frame.ticks:
        y = frame.y(v)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"'
                   ' class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    for t in x_ticks:
        x = frame.x(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{HEIGHT - BOTTOM}"'
                   f' y2="{HEIGHT - BOTTOM + 4}" class="axis"/>')
        out.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                   f"{_clock(t - x0)}</text>")
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}"'
               f' y2="{HEIGHT - BOTTOM}" class="axis"/>')
    middle = (TOP + HEIGHT - BOTTOM) / 2
    out.append(f'<text x="14" y="{middle:.1f}" text-anchor="middle" class="unit"'
               f' transform="rotate(-90 14 {middle:.1f})">{escape(y_label)}</text>')
    out.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end" class="unit">'
               "time since the run started (m:ss)</text>")
    return out


def _y_range(values: list[float], y_min: float | None, y_max: float | None,
             log: bool) -> tuple[float, float, list[float]]:
    lo = min(values) if y_min is None else y_min
    hi = max(values) if y_max is None else y_max
    if log:
        lo = max(min((v for v in values if v > 0), default=1.0), 1e-3) if y_min is None else lo
        lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(max(hi, lo * 10)))
        ticks, t = [], lo
        while t <= hi * 1.0001:
            ticks.append(t)
            t *= 10
        return lo, hi, ticks
    ticks = _nice(lo, hi)
    return ticks[0], ticks[-1], ticks


def _path(frame: _Frame, points: list[tuple[float, float]]) -> str:
    """An SVG path through the points that breaks where samples are missing (a scrape
    target that is gone), rather than drawing a straight line over the gap."""
    gaps = sorted(b[0] - a[0] for a, b in itertools.pairwise(points))
    usual = gaps[len(gaps) // 2] if gaps else 0.0
    out, prev = [], None
    for t, v in points:
        move = prev is None or (usual and t - prev > 3 * usual)
        out.append(f"{'M' if move else 'L'}{frame.x(t):.1f},{frame.y(v):.1f}")
        prev = t
    return " ".join(out)


def line_chart(title: str, lines: Sequence[Line], *, x0: float, y_label: str = "",
               bands: Sequence[Band] = (), hlines: Sequence[tuple[float, str]] = (),
               y_min: float | None = None, y_max: float | None = None, log: bool = False,
               x_range: tuple[float, float] | None = None) -> str:
    """Lines over time; ``bands`` shade spans (faults), ``hlines`` mark thresholds."""
    drawn = [line for line in lines if line.points]
    if not drawn:
        return _empty(title, "no samples in the run's time span")
    xs = [t for line in drawn for t, _ in line.points]
    ys = [v for line in drawn for _, v in line.points] + [v for v, _ in hlines]
    lo_x, hi_x = x_range or (min(xs), max(xs))
    lo, hi, ticks = _y_range(ys, y_min, y_max, log)
    frame = _Frame(lo_x, max(hi_x, lo_x + 1), lo, hi, log, ticks)
    step = next((t for t in _TIME_STEPS if (frame.x_max - x0) / t <= 8), _TIME_STEPS[-1])
    x_ticks = [x0 + k * step for k in range(int((frame.x_max - x0) / step) + 1)
               if x0 + k * step >= frame.x_min]
    body = _axes(frame, y_label, x_ticks, x0)
    for row, band in enumerate(bands):
        a, b = frame.x(max(band.start, frame.x_min)), frame.x(min(band.end, frame.x_max))
        if b > a:
            body.append(f'<rect x="{a:.1f}" y="{TOP}" width="{b - a:.1f}"'
                        f' height="{HEIGHT - TOP - BOTTOM}" fill="{band.color}"'
                        f' class="band"><title>{escape(band.label)}</title></rect>')
            # The label starts at the band, or ends at it when it would run off the chart.
            fits = a + 3 + _CHAR_PX * len(band.label) <= WIDTH - RIGHT
            x, anchor = (a + 3, "start") if fits else (b - 3, "end")
            body.append(f'<text x="{x:.1f}" y="{TOP + 11 + 13 * (row % 2)}"'
                        f' class="bandlabel" text-anchor="{anchor}">{escape(band.label)}</text>')
    for value, label in hlines:
        y = frame.y(value)
        body.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"'
                    ' class="threshold"/>')
        body.append(f'<text x="{WIDTH - RIGHT - 2}" y="{y - 3:.1f}" text-anchor="end"'
                    f' class="thresholdlabel">{escape(label)}</text>')
    legend = []
    for i, line in enumerate(drawn):
        color = line.color or PALETTE[i % len(PALETTE)]
        path = _path(frame, sorted(line.points))
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        body.append(f'<path d="{path}" stroke="{color}" class="line"{dash}'
                    f' data-series="{escape(line.name)}" data-points="{len(line.points)}"/>')
        legend.append((line.name, color, line.dashed))
    return _svg(title, body + _legend(legend))


def bar_chart(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]],
              *, y_label: str = "", highlight: Sequence[str] = (), zeros: bool = False) -> str:
    """Grouped bars: one group per label, one bar per series. A single series drawn for a
    label in ``highlight`` is orange (a failed night). All zeros is "nothing was counted"
    unless ``zeros`` says a zero is a measurement (no budget used)."""
    values = [v for _, vs in series for v in vs]
    if not labels or not (any(values) or zeros):
        return _empty(title, "nothing was counted")
    ticks = _nice(0, max(values))
    frame = _Frame(0, len(labels), 0, ticks[-1], False, ticks)
    body = _axes(frame, y_label, [], 0)[:-1]  # no time caption under categories
    slot = (WIDTH - LEFT - RIGHT) / len(labels)
    width = min(slot * 0.76 / len(series), 48.0)
    for i, label in enumerate(labels):
        first = LEFT + (i + 0.5) * slot - width * len(series) / 2
        for k, (name, vs) in enumerate(series):
            value = vs[i]
            x, y = first + k * width, frame.y(value)
            fill = PALETTE[1] if len(series) == 1 and label in highlight else PALETTE[k * 2]
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}"'
                        f' height="{HEIGHT - BOTTOM - y:.1f}" fill="{fill}" class="bar"'
                        f' data-series="{escape(name)}" data-label="{escape(label)}"'
                        f' data-value="{value:g}"><title>{escape(name)} {escape(label)}:'
                        f" {value:g}</title></rect>")
            if value or zeros:
                shown = f"{value:.0f}" if value >= 1 or not value else f"{value:.2g}"
                body.append(f'<text x="{x + width / 2:.1f}" y="{y - 4:.1f}"'
                            f' text-anchor="middle" class="barvalue">{shown}</text>')
        x, y = LEFT + (i + 0.5) * slot, HEIGHT - BOTTOM + 16
        if _CHAR_PX * len(label) > slot:  # too long to sit under its bar: slant it
            body.append(f'<text x="{x:.1f}" y="{y - 4}" text-anchor="end" font-size="9"'
                        f' transform="rotate(-25 {x:.1f} {y - 4})">{escape(label)}</text>')
        else:
            body.append(f'<text x="{x:.1f}" y="{y}" text-anchor="middle">{escape(label)}</text>')
    if len(series) > 1:
        body += _legend([(name, PALETTE[k * 2], False) for k, (name, _) in enumerate(series)])
    return _svg(title, body)
