"""Checks of a Prometheus that watches the mesh, as functions over its API answers: every
target up, every generated rule group loaded without errors, every recording rule returning
data, and no SLO burning its error budget at a paging rate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alerts.catalog import CATALOG, MESH_JOB
from alerts.rules import rule_files
from alerts.sloth import SLI_RECORD
from alerts.windows import burn_rate_windows

__all__ = [
    "MESH_JOB",
    "burn_rate_problems",
    "expected_groups",
    "recording_rules",
    "rule_problems",
    "selector",
    "target_problems",
]

Query = Callable[[str], list[dict[str, Any]]]


def expected_groups() -> dict[str, list[dict[str, Any]]]:
    """Every rule group `make alerts` generates, by name, with its rules."""
    return {g["name"]: g["rules"] for doc in rule_files().values() for g in doc["groups"]}


def target_problems(targets: list[dict[str, Any]], job: str = MESH_JOB) -> list[str]:
    out = []
    if not any(t["labels"].get("job") == job for t in targets):
        out.append(f"no target of job {job!r}: Prometheus does not scrape the mesh "
                   "(the generated rules select up{job=\"mesh\"})")
    for t in targets:
        if t.get("health") != "up":
            where = t.get("scrapeUrl") or t["labels"].get("instance")
            out.append(f"{t.get('scrapePool')} target {where} is {t.get('health')}: "
                       f"{t.get('lastError') or 'no error reported'}")
    return out


def rule_problems(loaded: list[dict[str, Any]],
                  expected: dict[str, list[dict[str, Any]]]) -> list[str]:
    by_name = {g["name"]: g for g in loaded}
    out = []
    for name, rules in expected.items():
        group = by_name.get(name)
        if group is None:
            out.append(f"rule group {name} is not loaded")
            continue
        want = sorted(r.get("record") or r["alert"] for r in rules)
        have = sorted(r["name"] for r in group["rules"])
        if have != want:
            out.append(f"rule group {name} holds {len(have)} rules, the generated one "
                       f"{len(want)}: stale rule files? (run `make alerts`)")
        for r in group["rules"]:
            if r.get("health") != "ok" or r.get("lastError"):
                out.append(f"{name}/{r['name']}: health {r.get('health')}: "
                           f"{r.get('lastError') or 'no error text'}")
    return out


def recording_rules(expected: dict[str, list[dict[str, Any]]]) -> list[tuple[str, dict[str, str]]]:
    return [(r["record"], dict(r.get("labels", {})))
            for rules in expected.values() for r in rules if "record" in r]


def selector(record: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{record}{{{inner}}}"


def burn_rate_problems(query: Query) -> list[str]:
    """SLOs whose error ratio is over a page threshold in both windows of a page alert: what
    the burn-rate alert pages on (it has no `for`)."""
    out = []
    for slo in CATALOG:
        for w in burn_rate_windows(slo.window):
            if w.severity != "page":
                continue
            burns = []
            for window in (w.long, w.short):
                rows = query(selector(SLI_RECORD.format(window=window), slo.labels))
                ratio = max((float(r["value"][1]) for r in rows), default=0.0)
                burns.append(ratio / slo.error_budget)
            if all(b > w.factor for b in burns):
                out.append(f"{slo.id}: burning {burns[0]:.1f}x its error budget over {w.long} "
                           f"and {burns[1]:.1f}x over {w.short}, over the {w.factor:g}x page "
                           "threshold")
    return out
