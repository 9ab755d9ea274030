"""Render a built report (``slo-report.json``) to HTML and Markdown with jinja2 templates.

The templates see only the report JSON and the charts drawn from it here, so the HTML and the
Markdown can never show a figure the JSON does not hold.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from alerts.backtest.render import duration
from alerts.catalog import CATALOG, burn_rate_windows
from reports.charts import Band, Line, bar_chart, line_chart

__all__ = ["charts", "environment", "write_all"]

NONE = "\u2013"  # an en dash: a figure that does not exist (not a zero)
TIMES = "\u00d7"

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Burn-rate lines: a fixed colour and a short legend name per SLO of the catalog.
_SLO_LINES = {"api-availability": ("API", "#0072B2"),
              "registration-availability": ("registration", "#009E73"),
              "handshake-success": ("handshake", "#CC79A7"),
              "policy-decision-latency": ("policy latency", "#E69F00"),
              "revocation-propagation": ("revocation", "#56B4E9")}


def _pct(value: float | None, digits: int = 3) -> str:
    return NONE if value is None else f"{value * 100:.{digits}f}%"


def _num(value: float | None, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "not recorded"
    return f"{value:,.{digits}f}{unit}" if isinstance(value, float) else f"{value:,}{unit}"


def _ms(value: float | None) -> str:
    return NONE if value is None else f"{value:,.2f} ms"


def _when(unix: float | None) -> str:
    if unix is None:
        return NONE
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    s = round(seconds)
    return f"{'-' if s < 0 else ''}{abs(s) // 60}:{abs(s) % 60:02d}"


def _span(seconds: float | None) -> str:
    """A duration the way the backtest tables write it: 63.7 s, 2m, 1h30m."""
    if seconds is None:
        return NONE
    return f"{seconds:.1f} s" if seconds < 90 else duration(seconds)


def _met(value: bool | None) -> str:
    return {True: "met", False: "NOT MET", None: "not recorded"}[value]


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(pct=_pct, num=_num, ms=_ms, when=_when, clock=_clock, met=_met,
                       span=_span)
    return env


def _page_factors() -> list[float]:
    """Burn rates that page, from the alert windows the rules are generated from."""
    return sorted({w.factor for w in burn_rate_windows(CATALOG[0].window) if w.severity == "page"})


def _points(raw: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    return [(float(t), float(v)) for t, v in raw]


def charts(report: dict[str, Any]) -> dict[str, str]:
    """Every chart of the report as inline SVG, keyed by its section."""
    x0, end = report["span"]["start"], report["span"]["end"]
    series, client = report["series"], report["series"]["client"]
    bands = [Band(f["start"], f["end"], f["label"]) for f in report["faults"]]
    common: dict[str, Any] = {"x0": x0, "bands": bands, "x_range": (x0, end)}
    api = next(r for r in report["slos"] if r["id"] == "api-availability")
    avail = line_chart(
        "Availability (share of requests without a 5xx)",
        [Line("server (Prometheus)", _points(series["server_availability"])),
         Line("client (load generator, per second)", _points(client["availability"]),
              dashed=True)],
        y_label="% available", hlines=[(api["objective"], f"objective {api['objective']}%")],
        y_max=100.0, **common)
    latency = line_chart(
        "Latency percentiles (log scale)",
        [Line("server p50", _points(series["server_latency"].get("p50", []))),
         Line("server p99", _points(series["server_latency"].get("p99", []))),
         Line("client p99 service time", _points(client["p99"]), dashed=True),
         Line("client p99 from intended send time", _points(client["p99_corrected"]),
              dashed=True)],
        y_label="milliseconds", log=True, **common)
    burn = line_chart(
        f"Error budget burn rate ({report['prometheus']['burn_window']} window)",
        [Line(_SLO_LINES.get(k, (k, ""))[0], _points(v), _SLO_LINES.get(k, (k, ""))[1])
         for k, v in series["burn_rates"].items()],
        y_label=f"{TIMES} budget rate", y_min=0.0,
        hlines=[(f, f"page: {f:g}{TIMES}") for f in _page_factors()], **common)
    zones = line_chart(
        "Requests by zone (server)",
        [Line(f"zone {z}", _points(v)) for z, v in sorted(series["zones"].items()) if z],
        y_label="requests/s", y_min=0.0, **common)
    prop = report["propagation"]
    prop_series = [("client probes and drills", prop["client"])]
    if prop["server"]:
        prop_series.append(("server histogram", prop["server"]))
    propagation = bar_chart("Revocation propagation delay", prop["labels"], prop_series,
                            y_label="revocations")
    trend = report.get("trend", [])
    nights = [e["run_id"].removesuffix("-nightly") for e in trend]
    used = [100 * (((e["slos"].get("api-availability") or {}).get("budget_consumed")) or 0)
            for e in trend]
    trend_chart = bar_chart("API availability: error budget used by each night's run", nights,
                            [("budget used %", used)], y_label="% of the run's budget", zeros=True,
                            highlight=[n for n, e in zip(nights, trend, strict=True)
                                       if not e["passed"]])
    return {"availability": avail, "latency": latency, "burn": burn, "zones": zones,
            "propagation": propagation, "trend": trend_chart,
            **_fault_charts([*report["chaos"], *report["drills"]]),
            **_governance_charts(report["governance"])}


def _fault_charts(experiments: list[dict[str, Any]]) -> dict[str, str]:
    """The clients of each fault (every AZ failure mode, and the data fault) side by side,
    seconds from its start: p99 from the intended send time, and failed requests."""
    runs = [e for e in experiments if e.get("client_timeline") and e.get("fault")]
    if not runs:
        return {}

    def line(e: dict[str, Any], key: str, positive: bool = False) -> Line:
        start = float(e["fault"]["started_at"])
        return Line(e["mode"], [(p["t"] - start, float(p[key])) for p in e["client_timeline"]
                                if not positive or p[key] > 0])

    # The timelines end before each drill's rollback: the fault is on from 0 to their end.
    on = max(e["client_timeline"][-1]["t"] - float(e["fault"]["started_at"]) for e in runs)
    common: dict[str, Any] = {"x0": 0.0, "bands": [Band(0.0, on, "fault on")]}
    latency = line_chart("Clients across each fault: p99 from the intended send time",
                         [line(e, "p99_corrected_ms", True) for e in runs], y_label="ms (log)",
                         log=True, **common)
    errors = line_chart("Clients across each fault: failed requests",
                        [line(e, "failures") for e in runs], y_label="per second", y_min=0.0,
                        **common)
    return {"fault_latency": latency, "fault_errors": errors}


def _governance_charts(governance: dict[str, Any]) -> dict[str, str]:
    """Tool-call latency direct and through a sidecar, and revocation to enforcement on each
    sidecar, for the last governance job of the run."""
    jobs = governance["jobs"]
    if not jobs:
        return {}
    job = jobs[-1]
    o, w = job["overhead"], job["while_revoking"]

    def pair(view: dict[str, Any], path: str) -> list[float]:
        return [view[path]["p50_ms"] or 0.0, view[path]["p99_ms"] or 0.0]

    series = [("direct", pair(o, "direct")), ("through a sidecar", pair(o, "via_sidecar"))]
    if w["via_sidecar"]["requests"]:
        series.append(("through a sidecar, while revoking", pair(w, "via_sidecar")))
    overhead = bar_chart(
        f"Governance overhead: tool call latency (p99 overhead {_num(o['p99_overhead_ms'])} ms,"
        f" SLO < {governance['objective']['max_p99_ms']:g} ms)", ["p50", "p99"], series,
        y_label="milliseconds")
    rows = job["sidecars"]
    enforcement = bar_chart(
        "Revocation to enforcement on every sidecar",
        [r["name"] for r in rows],
        [(q, [1000 * (r["revocations"][f"{q}_s"] or 0.0) for r in rows])
         for q in ("p50", "p99", "max")], y_label="milliseconds")
    return {"governance_overhead": overhead, "governance_enforcement": enforcement}


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_all(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write slo-report.json, .html and .md into ``out_dir``."""
    env = environment()
    drawn = charts(report)
    context = {"r": report, "charts": drawn}
    return {
        "json": _write(out_dir / "slo-report.json",
                       json.dumps(report, indent=2, sort_keys=True) + "\n"),
        "html": _write(out_dir / "slo-report.html",
                       env.get_template("report.html.j2").render(context)),
        "md": _write(out_dir / "slo-report.md", env.get_template("report.md.j2").render(context)),
    }
