"""Recording rules and burn-rate alerts of one SLO, named and labelled the way Sloth does it.

Same record names, labels and group names as `sloth generate`, so Sloth's public Grafana
dashboards (and anything else that reads ``slo:*`` series) work unchanged, and like Sloth one
alert rule per severity with its window pairs inside. Deliberate differences: the period SLI
(30d) is a ratio of sums over raw counters, not Sloth's average of 5-minute ratios; a window
pair also needs the catalog's low-traffic minimum; and a histogram SLI whose good bucket is
missing raises ``MeshSliMissing`` instead of reading as 100% errors.
"""

from __future__ import annotations

from typing import Any

from alerts.catalog import SLO
from alerts.windows import AlertWindow, Severity, burn_rate_windows, seconds, sli_windows

__all__ = ["META_RECORDS", "SEVERITIES", "SLI_MISSING", "SLI_RECORD", "Rule", "slo_groups"]

Rule = dict[str, Any]

SLI_RECORD = "slo:sli_error:ratio_rate{window}"
SLI_MISSING = "MeshSliMissing"
SEVERITIES: tuple[Severity, ...] = ("page", "ticket")
META_RECORDS = (
    "slo:objective:ratio",
    "slo:error_budget:ratio",
    "slo:time_period:days",
    "slo:current_burn_rate:ratio",
    "slo:period_burn_rate:ratio",
    "slo:period_error_budget_remaining:ratio",
    "sloth_slo_info",
)
# What sloth_slo_info says generated the rules; Sloth's dashboards only read its labels.
_GENERATOR = {"sloth_mode": "cli-gen-prom", "sloth_spec": "meshsre/v1", "sloth_version": "meshsre"}


def _num(value: float) -> str:
    # Round away float noise (1 - 0.999 is 0.0010000000000000009) and drop a bare ".0".
    return repr(round(value, 10)).removesuffix(".0")


def _filter(slo: SLO) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in slo.labels.items()) + "}"


def _sli_rules(slo: SLO) -> list[Rule]:
    return [
        {
            "record": SLI_RECORD.format(window=window),
            "expr": slo.sli.error_ratio(window) + "\n",
            "labels": {**slo.labels, "sloth_window": window},
        }
        for window in sli_windows(slo.window)
    ]


def _meta_rules(slo: SLO) -> list[Rule]:
    f = _filter(slo)
    quick = min(burn_rate_windows(slo.window), key=lambda w: seconds(w.short)).short

    def burn(window: str) -> str:
        return (
            f"{SLI_RECORD.format(window=window)}{f}\n"
            "/ on(sloth_id, sloth_slo, sloth_service) group_left\n"
            f"slo:error_budget:ratio{f}\n"
        )

    objective = _num(slo.objective)
    exprs = (
        f"vector({_num(slo.ratio)})",
        # Sloth writes vector(1-0.999), which is 0.0010000000000000009: every burn rate
        # divided by it would read 19.99999999999998 instead of 20.
        f"vector({_num(slo.error_budget)})",
        f"vector({_num(seconds(slo.window) / 86400)})",
        burn(quick),
        burn(slo.window),
        f"1 - slo:period_burn_rate:ratio{f}",
        "vector(1)",
    )
    rules: list[Rule] = [
        {"record": record, "expr": expr, "labels": dict(slo.labels)}
        for record, expr in zip(META_RECORDS, exprs, strict=True)
    ]
    rules[-1]["labels"].update(_GENERATOR, sloth_objective=objective)
    return rules


def _low_traffic(slo: SLO, long: str) -> str:
    """The catalog's low-traffic policy as a condition on the long window, or nothing."""
    policy, sli = slo.low_traffic, slo.sli
    parts = [f"{sli.bad_events(long)} >= {policy.min_errors}"] if policy.min_errors else []
    parts += [f"{sli.events(long)} >= {policy.min_events}"] if policy.min_events else []
    return "".join(f"\n  and on () {p}" for p in parts)


def _pair(slo: SLO, w: AlertWindow) -> str:
    f = _filter(slo)
    threshold = f"({_num(w.factor)} * {_num(slo.error_budget)})"

    def over(window: str) -> str:
        return (f"max({SLI_RECORD.format(window=window)}{f} > {threshold})"
                " without (sloth_window)")

    # The long window first: the alert's value is its error ratio, the steadier one.
    return f"(\n  {over(w.long)}\n  and\n  {over(w.short)}{_low_traffic(slo, w.long)}\n)"


def _burn_alert(slo: SLO, severity: Severity) -> Rule:
    """One rule per severity with its window pairs inside, as Sloth writes them: an incident
    that moves from one pair to the other stays one alert. No `for`: the short window already
    keeps a blip from firing (the backtest measures what a `for` would buy)."""
    windows = [w for w in burn_rate_windows(slo.window) if w.severity == severity]
    budget = f"{_num(slo.error_budget * 100)}%"
    pairs = ", or ".join(f"{_num(w.factor)}x{' its rate' if i == 0 else ''} over {w.long} and"
                         f" {w.short}" for i, w in enumerate(windows))
    gone = " or ".join(w.exhaustion for w in windows)
    return {
        "alert": slo.alert_name,
        "expr": "\nor\n".join(_pair(slo, w) for w in windows) + "\n",
        "labels": {"severity": severity, "sloth_severity": severity, "slo": slo.id},
        "annotations": {
            "summary": f"The {slo.title} SLO is spending its error budget too fast.",
            "description": (
                f"{{{{ $value | humanizePercentage }}}} of {slo.title} events failed over the"
                f" longer window that fired: the {budget} error budget burns at over {pairs}."
                f" At that pace the {slo.window} budget is gone in {gone}."
            ),
        },
    }


def _sli_missing(slo: SLO) -> Rule:
    """A good/total SLI without its good series reads as every event failing: alert on the
    missing series instead (the SLI then has no value, so the burn alerts stay quiet)."""
    by = "count by (job, instance)"
    return {
        "alert": SLI_MISSING,
        "expr": f"{by} ({slo.sli.total})\nunless on (job, instance)\n{by} ({slo.sli.good})\n",
        "labels": {"severity": "ticket", "slo": slo.id},
        "annotations": {
            "summary": "An SLI cannot be computed: a replica does not expose its good events.",
            "description": (
                f"{{{{ $labels.instance }}}} exposes {slo.sli.total} but not {slo.sli.good}:"
                f" the {slo.title} SLO cannot be measured there, and its burn-rate alerts"
                " cannot see it."
            ),
        },
    }


def slo_groups(slo: SLO) -> list[dict[str, Any]]:
    """The three rule groups of one SLO, as `sloth generate` names them."""
    alerts = [_burn_alert(slo, severity) for severity in SEVERITIES]
    if slo.sli.bucket:
        alerts.append(_sli_missing(slo))
    return [
        {"name": f"sloth-slo-sli-recordings-{slo.sloth_id}", "rules": _sli_rules(slo)},
        {"name": f"sloth-slo-meta-recordings-{slo.sloth_id}", "rules": _meta_rules(slo)},
        {"name": f"sloth-slo-alerts-{slo.sloth_id}", "rules": alerts},
    ]
