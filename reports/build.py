"""Build ``slo-report.json`` from a run directory and Prometheus: the one source of the HTML
and Markdown reports.

Every figure here comes from a run record or from a Prometheus query over the run's span.
Prometheus being unreachable does not stop the report: the server view is marked
unavailable (loudly) and verdicts rest on the records alone.

Top-level fields of ``meshsre.report/v1``: ``run_id``, ``span`` (start, end, duration_s),
``platform``, ``stages`` (from run.json), ``prometheus`` (url, available, why_not, windows),
``excluded`` (disaster drills not charged to the SLOs), ``faults``, ``slos`` (one row per
SLO: objective, client, server, server_same_windows, delta_points, disagree,
budget_consumed, peak_burn_rate, verdict), ``disagreements``, ``loads``, ``phases``,
``generator``, ``chaos``, ``drills``, ``governance`` (sidecar overhead and revocation to
enforcement per sidecar, ``reports.governance``), ``checks`` (suites run against the
deployment: name, title, passed, checks, figures), ``propagation``, ``alerts`` (webhook
notifications), ``alert_quality`` (live pages, precision and drill recall, per-alert backtest
and live times: ``reports.alerting``), ``alerts_firing`` (Prometheus ``ALERTS``), ``series``
(every chart's points), ``zone_totals``,
``verdict`` (passed, breaches, load_findings); ``trend`` and ``history_file`` are added by
``reports.report`` once the history is written.
"""

from __future__ import annotations

from typing import Any

from alerts.windows import seconds
from loadtests.thresholds import threshold_for
from mesh.telemetry import PROPAGATION_BUCKETS
from reports import alerting, chaos, governance
from reports.client import (
    Window,
    generator_health,
    phase_stats,
    phases,
    probe_delays,
    second_quantile,
)
from reports.prom import Prom, PrometheusError
from reports.records import LoadRecord, RunRecords
from reports.server import Counts, ServerView, catalog_slo
from reports.slo import DISAGREEMENT_POINTS, slo_rows

__all__ = ["SCHEMA", "SCHEMA_VERSION", "build"]

SCHEMA = "meshsre.report/v1"
SCHEMA_VERSION = 1
BURN_WINDOW = "1m"


def _load_section(load: LoadRecord) -> dict[str, Any]:
    data = load.data
    params = data["parameters"]
    return {
        "name": load.name, "run_id": data["run_id"], "started_at": data["started_at"],
        "ended_at": data["ended_at"], "duration_s": data["duration_s"],
        "parameters": {k: params.get(k) for k in ("host", "shape", "users", "rate",
                                                  "duration_s", "workers")},
        "totals": {k: v for k, v in data["totals"].items() if k != "routes"},
        "routes": [{"route": key, "requests": r["requests"], "server_errors": r["server_errors"],
                    "service_ms": r["service_ms"], "corrected_ms": r["corrected_ms"]}
                   for key, r in sorted(data["totals"]["routes"].items())],
        "thresholds": data["thresholds"], "verdict": data["verdict"],
        "ledger_count": data["ledger"]["count"],
        "revocation": data["revocation"]["summary"],
    }


def _checks_section(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec[k] for k in ("name", "title", "target", "started_at", "ended_at", "passed",
                                "checks", "figures")}


def _client_lines(run: RunRecords) -> dict[str, list[list[float]]]:
    avail, p99, p99c = [], [], []
    for load in run.loads:
        for row in load.data["series"]:
            t = float(row["t"])
            if row["requests"]:
                avail.append([t, round(100 * (1 - row["server_errors"] / row["requests"]), 4)])
            if (q := second_quantile(row, 0.99)) is not None:
                p99.append([t, round(q, 3)])
            if (q := second_quantile(row, 0.99, corrected=True)) is not None:
                p99c.append([t, round(q, 3)])
    return {"availability": avail, "p99": p99, "p99_corrected": p99c}


def _propagation(delays: list[float | None], server: list[tuple[float, float]] | None,
                 ) -> dict[str, Any]:
    edges = list(PROPAGATION_BUCKETS)
    labels = [f"≤{e * 1000:g}ms" if e < 1 else f"≤{e:g}s" for e in edges] + ["more"]
    client = [0] * (len(edges) + 1)
    for d in delays:
        i = len(edges) if d is None else next((k for k, e in enumerate(edges) if d <= e),
                                              len(edges))
        client[i] += 1
    out: dict[str, Any] = {"labels": labels, "client": client, "server": None}
    if server:
        cumulative = dict(server)
        counts, before = [], 0.0
        for e in [*edges, float("inf")]:
            now = cumulative.get(e, before)
            counts.append(round(now - before, 3))
            before = now
        out["server"] = counts
    known = sorted(d for d in delays if d is not None)
    out["client_summary"] = {
        "count": len(delays), "timed_out": sum(d is None for d in delays),
        "p50_s": known[len(known) // 2] if known else None,
        "p99_s": known[min(len(known) - 1, int(0.99 * len(known)))] if known else None,
        "max_s": known[-1] if known else None}
    return out


def _alert_rows(run: RunRecords, start: float) -> list[dict[str, Any]]:
    rows = []
    for a in run.alerts:
        labels = a.get("labels") or {}
        rows.append({"at": a["received_at"], "offset_s": round(a["received_at"] - start, 1),
                     "name": a.get("name", ""), "status": a.get("status", ""),
                     "severity": labels.get("severity", ""),
                     "where": ", ".join(f"{k}={labels[k]}" for k in ("zone", "sloth_slo")
                                        if k in labels),
                     "summary": (a.get("annotations") or {}).get("summary", "")})
    return rows


def _firing(server: ServerView, start: float) -> list[dict[str, Any]]:
    out = []
    for s in server.alerts():
        if s.labels.get("alertstate") != "firing" or not s.points:
            continue
        labels = s.labels
        out.append({"name": labels.get("alertname", ""), "severity": labels.get("severity", ""),
                    "where": ", ".join(f"{k}={labels[k]}" for k in ("zone", "sloth_slo")
                                       if k in labels),
                    "from_s": round(s.points[0][0] - start, 1),
                    "to_s": round(s.points[-1][0] - start, 1)})
    return sorted(out, key=lambda r: (r["from_s"], r["name"]))


def _complement(start: float, end: float, holes: list[tuple[float, float]],
                ) -> list[tuple[float, float]]:
    """[start, end] without the holes, as windows of at least one second."""
    out, at = [], start
    for s, e in sorted(holes):
        if s - at >= 1:
            out.append((at, s))
        at = max(at, e)
    if end - at >= 1:
        out.append((at, end))
    return out


def _overlaps(load: LoadRecord, windows: list[tuple[float, float, str]]) -> bool:
    return any(s < load.ended and e > load.started for s, e, _ in windows)


def _propagation_counts(run: RunRecords, delays: list[float | None]) -> Counts | None:
    slo = catalog_slo("revocation-propagation")
    threshold = threshold_for(slo)
    assert threshold is not None  # the catalog's propagation SLI is a histogram bucket
    le = threshold.le_ms / 1000
    late, checked = chaos.drill_propagation(run, le)
    late += sum(1 for d in delays if d is None or d > le)
    checked += len(delays)
    return Counts(float(late), float(checked)) if checked else None


def _server_part(prom: Prom | None, start: float, end: float, rate_window: float,
                 ) -> tuple[ServerView | None, str]:
    if prom is None:
        return None, "no Prometheus URL was given (--prometheus or PROMETHEUS_URL)"
    if not prom.ready():
        return None, f"Prometheus at {prom.url} did not answer"
    return ServerView(prom, start, end, rate_window), ""


def build(run: RunRecords, prom: Prom | None, rate_window: float = 15.0) -> dict[str, Any]:
    span = run.span
    assert span is not None  # read_run refuses a run without records
    start, end = span
    faults = chaos.faults(run)
    server, why_not = _server_part(prom, start, end, rate_window)
    try:
        return _build(run, server, why_not, start, end, faults)
    except PrometheusError as exc:
        return _build(run, None, f"Prometheus failed mid-report: {exc}", start, end, faults)


def _build(run: RunRecords, server: ServerView | None, why_not: str, start: float,
           end: float, faults: list[chaos.Fault]) -> dict[str, Any]:
    burns = server.burn_rates(BURN_WINDOW) if server else {}
    drill_delays = chaos.drill_delays(run)
    excluded = chaos.disasters(run)
    judged = _complement(start, end, [(s, e) for s, e, _ in excluded])
    # A burn rate is judged only once its window holds nothing of a disaster.
    after = [(s, e + seconds(BURN_WINDOW)) for s, e, _ in excluded]
    judged_burns = {k: [(t, v) for t, v in pts if not any(s <= t <= e for s, e in after)]
                    for k, pts in burns.items()}
    slos = slo_rows([ld for ld in run.loads if not _overlaps(ld, excluded)], server, judged,
                    judged_burns, _propagation_counts(run, drill_delays))
    windows: list[tuple[LoadRecord, Window]] = [(ld, w) for ld in run.loads
                                         for w in phases(ld, faults)]
    phase_rows = []
    for load, w in windows:
        row = phase_stats(load, w)
        if server is not None and w.end > w.start:
            p50 = server.latency_between(w.start, w.end, 0.5)
            p99 = server.latency_between(w.start, w.end, 0.99)
            row["server_ms"] = {"p50": None if p50 is None else round(p50, 3),
                                "p99": None if p99 is None else round(p99, 3)}
        phase_rows.append(row)
    experiments, drills = chaos.experiments(run), chaos.drills(run)
    breaches = [{"kind": "slo", "id": r["id"],
                 "detail": f"breached by the {' and '.join(r['breached_by'])} view"}
                for r in slos if r["verdict"] == "breached"]
    breaches += [{"kind": "drill", "id": d["name"],
                  "detail": "; ".join(d["failures"]) or "an objective was not met"}
                 for d in drills if not d["passed"]]
    governed = governance.section(run)
    breaches += governance.breaches(governed)
    breaches += [{"kind": "chaos", "id": e["name"],
                  "detail": "; ".join(e["failures"]) or "the hypothesis was not met"}
                 for e in experiments if not e["passed"]]
    checks = [_checks_section(rec) for rec in run.checks]
    breaches += [{"kind": "check", "id": c["name"], "detail": "; ".join(
        f"{k['id']}: {k['message'] or k['outcome']}" for k in c["checks"]
        if k["outcome"] in ("failed", "error")) or "no check ran"} for c in checks
        if not c["passed"]]
    quality = alerting.section(run, faults, start, end, server.intervals() if server else {})
    breaches += [{"kind": "alerts", "id": "live", "detail": line}
                 for line in quality["breaches"]]
    # A load test's own thresholds are the load tool's verdict (client-side, HTTP included):
    # findings, not SLO breaches; `--fail-on load` makes them fail the run.
    findings = [{"kind": "load", "id": ld.name, "detail": "; ".join(
        ld.data["verdict"]["invalid_reasons"]) or "its thresholds breached: " + ", ".join(
        ld.data["verdict"]["breached"])} for ld in run.loads if not ld.data["verdict"]["passed"]]
    client = _client_lines(run)
    delays = probe_delays(run.loads) + drill_delays
    manifest = run.manifest or {}
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "run_id": run.run_id,
        "span": {"start": start, "end": end, "duration_s": round(end - start, 3)},
        "platform": manifest.get("platform", ""), "stages": manifest.get("stages", []),
        "prometheus": {"url": server.prom.url if server else None,
                       "available": server is not None, "why_not": why_not,
                       "rate_window": server.rate_window if server else None,
                       "burn_window": BURN_WINDOW},
        "excluded": [{"drill": d, "start": s, "end": e} for s, e, d in excluded],
        "faults": [{"start": f.start, "end": f.end if f.end is not None else end,
                    "recovered_at": f.recovered_at, "label": f.label} for f in faults],
        "slos": slos,
        "disagreements": [{"id": r["id"], "delta_points": r["delta_points"],
                           "client": r["client"]["good_ratio"],
                           "server": r["server_same_windows"]["good_ratio"]}
                          for r in slos if r["disagree"]],
        "disagreement_points": DISAGREEMENT_POINTS,
        "loads": [_load_section(ld) for ld in run.loads],
        "phases": phase_rows,
        "generator": [generator_health(ld) for ld in run.loads],
        "chaos": experiments, "drills": drills, "governance": governed, "checks": checks,
        "propagation": _propagation(delays, server.propagation_buckets() if server else None),
        "alerts": _alert_rows(run, start),
        "alert_quality": quality,
        "alerts_firing": _firing(server, start) if server else [],
        "series": {
            "client": client,
            "server_availability": [[t, round(100 * v, 4)] for s in
                                    (server.availability() if server else []) for t, v in s.points],
            "server_latency": {k: [[t, round(v, 3)] for s in v_ for t, v in s.points]
                               for k, v_ in (server.latency() if server else {}).items()},
            "burn_rates": {k: [[t, round(v, 3)] for t, v in pts] for k, pts in burns.items()},
            "zones": {s.labels.get("zone", "?"): [[t, round(v, 3)] for t, v in s.points]
                      for s in (server.requests_by_zone() if server else [])},
        },
        "zone_totals": server.requests_by_zone_total() if server else {},
        "verdict": {"passed": not breaches, "breaches": breaches, "load_findings": findings},
    }
