"""What-if rules for the backtest: the catalog's rules with another low-traffic policy, or with
a ``for`` on the burn alerts, generated into a directory the matrix then measures.

This is how the catalog's own choices were made (``alerts/README.md``):
``meshsre alerts backtest --low-traffic min-events=100`` or ``--for page=2m --for ticket=1h``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

from alerts.catalog import SLO, LowTraffic
from alerts.rules import render, rule_files, slo_file
from alerts.windows import seconds

__all__ = ["parse_for", "parse_policy", "write_rules"]

_POLICY = re.compile(r"^(off|min-errors=(\d+)|min-events=(\d+))$")


def parse_policy(text: str) -> LowTraffic:
    """``off``, ``min-errors=N`` or ``min-events=N``; ValueError saying which forms work."""
    match = _POLICY.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r}: use off, min-errors=N or min-events=N")
    errors, events = match.group(2), match.group(3)
    return LowTraffic(min_errors=int(errors or 0), min_events=int(events or 0))


def parse_for(items: Sequence[str]) -> dict[str, str]:
    """``page=2m`` items -> {severity: duration}; ValueError naming a bad one."""
    out = {}
    for item in items:
        severity, _, duration = item.partition("=")
        if severity not in ("page", "ticket"):
            raise ValueError(f"{item!r}: the severity is page or ticket, as in page=2m")
        seconds(duration)  # raises ValueError for anything but 5m, 1h...
        out[severity] = duration
    return out


def write_rules(directory: Path, slos: Sequence[SLO], policy: LowTraffic | None,
                fors: dict[str, str]) -> None:
    """The catalog's rule files into ``directory``, ``policy`` on every SLO and the ``for``
    durations on their burn alerts."""
    for slo in slos:
        changed = dataclasses.replace(slo, low_traffic=policy) if policy else slo
        doc = slo_file(changed)
        for group in doc["groups"]:
            for rule in group["rules"]:
                severity = rule.get("labels", {}).get("severity")
                if rule.get("alert") == slo.alert_name and severity in fors:
                    rule["for"] = fors[severity]
        (directory / f"slo-{slo.id}.rules.yml").write_text(render(doc))
    (directory / "mesh.rules.yml").write_text(render(rule_files()["mesh.rules.yml"]))
