"""Recording rules and burn-rate alerts of one SLO, named and labelled the way Sloth does it.

Same record names, labels and group names as `sloth generate`, so Sloth's public Grafana
dashboards (and anything else that reads ``slo:*`` series) work unchanged. Two deliberate
differences: the period SLI (30d) is a ratio of sums over raw counters, not Sloth's average of
5-minute ratios, and there is one alert rule per window pair, labelled ``long``/``short``/
``exhaustion``, so a page says which pair fired.
"""

from __future__ import annotations

from typing import Any

from alerts.catalog import SLO
from alerts.windows import AlertWindow, burn_rate_windows, seconds, sli_windows

__all__ = ["META_RECORDS", "SLI_RECORD", "Rule", "slo_groups"]

Rule = dict[str, Any]

SLI_RECORD = "slo:sli_error:ratio_rate{window}"
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


def _burn_alert(slo: SLO, w: AlertWindow) -> Rule:
    f = _filter(slo)
    threshold = f"({_num(w.factor)} * {_num(slo.error_budget)})"

    def over(window: str) -> str:
        return (
            f"max({SLI_RECORD.format(window=window)}{f} > {threshold})"
            " without (sloth_window)"
        )

    budget = f"{_num(slo.error_budget * 100)}%"
    return {
        "alert": slo.alert_name,
        # The long window first: the alert's value is its error ratio, the steadier one.
        "expr": f"{over(w.long)}\nand\n{over(w.short)}\n",
        "for": w.for_,
        "labels": {
            "severity": w.severity,
            "sloth_severity": w.severity,
            "slo": slo.id,
            "long": w.long,
            "short": w.short,
            "exhaustion": w.exhaustion,
        },
        "annotations": {
            "summary": f"The {slo.title} SLO is spending its error budget too fast.",
            "description": (
                # $labels holds the query's labels only, not this rule's: write the windows.
                f"{{{{ $value | humanizePercentage }}}} of {slo.title} events failed over"
                f" the last {w.long}, and the last {w.short} agrees: {_num(w.factor)}x the"
                f" {budget} error budget. At this rate the {slo.window} budget is gone in"
                f" {w.exhaustion}."
            ),
        },
    }


def slo_groups(slo: SLO) -> list[dict[str, Any]]:
    """The three rule groups of one SLO, as `sloth generate` names them."""
    return [
        {"name": f"sloth-slo-sli-recordings-{slo.sloth_id}", "rules": _sli_rules(slo)},
        {"name": f"sloth-slo-meta-recordings-{slo.sloth_id}", "rules": _meta_rules(slo)},
        {
            "name": f"sloth-slo-alerts-{slo.sloth_id}",
            "rules": [_burn_alert(slo, w) for w in burn_rate_windows(slo.window)],
        },
    ]
