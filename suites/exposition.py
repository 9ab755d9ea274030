"""Checks of one `/metrics` exposition against the telemetry contract. Each returns the
problems it found, as sentences, so a failing suite says what to fix."""

from __future__ import annotations

import math

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from mesh.telemetry import CONTRACT, exposed_names

__all__ = [
    "bucket_problems",
    "label_problems",
    "parse",
    "per_agent_problems",
    "type_problems",
    "undeclared_problems",
]

# The text format has no gauge-histogram type: such a family is exposed as a histogram.
_TEXT_TYPE = {"gaugehistogram": "histogram"}
_HISTOGRAMS = ("histogram", "gaugehistogram")
# prometheus_client adds a `_created` sample to counters and histograms.
_CREATED = frozenset(f"{m.name}_created" for m in CONTRACT if m.kind in ("counter", "histogram"))


def parse(text: str) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def type_problems(families: dict[str, Metric]) -> list[str]:
    out = []
    for m in CONTRACT:
        family = families.get(m.name)
        if family is None:
            out.append(f"{m.name}: not exposed")
            continue
        want = _TEXT_TYPE.get(m.kind, m.kind)
        if family.type != want:
            out.append(f"{m.name}: exposed as {family.type}, the contract says {want}")
        if not family.documentation:
            out.append(f"{m.name}: no HELP text")
    return out


def label_problems(families: dict[str, Metric]) -> list[str]:
    """Every sample carries exactly its contract labels (``le`` aside). A labelled family with
    no events yet has no samples, and so nothing to check."""
    out = []
    for m in CONTRACT:
        family = families.get(m.name)
        seen = {frozenset(s.labels) - {"le"} for s in family.samples} if family else set()
        for labels in sorted(seen - {frozenset(m.labels)}, key=sorted):
            out.append(f"{m.name}: samples labelled {sorted(labels)}, the contract says "
                       f"{sorted(m.labels)}")
    return out


def bucket_problems(families: dict[str, Metric]) -> list[str]:
    out = []
    for m in CONTRACT:
        family = families.get(m.name)
        if m.kind not in _HISTOGRAMS or family is None:
            continue
        want = [*m.buckets, math.inf]
        by_series: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for s in family.samples:
            if s.name.endswith("_bucket"):
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                by_series.setdefault(key, []).append(float(s.labels["le"]))
        for key, bounds in sorted(by_series.items()):
            if sorted(bounds) != want:
                out.append(f"{m.name}{dict(key)}: buckets {sorted(bounds)}, the contract says "
                           f"{want}")
    return out


def undeclared_problems(families: dict[str, Metric]) -> list[str]:
    """The mesh exposes no ``agentmesh_`` sample that the contract does not declare."""
    allowed = exposed_names() | _CREATED
    names = {s.name for f in families.values() for s in f.samples}
    return [f"{n}: exposed but not in the telemetry contract" for n in
            sorted(n for n in names if n.startswith("agentmesh_") and n not in allowed)]


def per_agent_problems(families: dict[str, Metric]) -> list[str]:
    """No label value names an agent: series must not grow with the registry."""
    out = set()
    for family in families.values():
        for s in family.samples:
            for key, value in s.labels.items():
                if value.startswith("did:"):
                    out.add(f"{s.name}: label {key} holds an agent DID")
    return sorted(out)
