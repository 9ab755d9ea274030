"""OpenSLO v1 export and import of the catalog.

Ratio SLOs become ``ratioMetric`` indicators over raw counters (``counter: true``: the reader
takes rates itself); the backup freshness objective becomes a ``thresholdMetric`` with
time-slice budgeting. What OpenSLO has no field for (the Grafana dashboard) rides in
``metadata.annotations``. Import runs the catalog's validation, so an OpenSLO file naming a
metric the mesh does not expose is refused with the same message as the catalog would give.
OpenSLO v1alpha documents, as Sloth writes and reads them, are imported too.
"""

from __future__ import annotations

from typing import Any

from alerts.catalog import (
    BACKUP_FRESHNESS,
    CATALOG,
    SERVICE,
    SLI,
    SLO,
    CatalogError,
    FreshnessObjective,
    check_freshness,
    validate,
)
from alerts.promql import counter_selector, series_names

__all__ = ["API_VERSION", "V1ALPHA", "Objective", "export_documents", "import_documents"]

API_VERSION = "openslo/v1"
V1ALPHA = "openslo/v1alpha"
_DASHBOARD = "meshsre.dev/dashboard"
Objective = SLO | FreshnessObjective
Document = dict[str, Any]


def _source(query: str) -> Document:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def _metadata(name: str, title: str, dashboard: str) -> Document:
    return {"name": name, "displayName": title, "annotations": {_DASHBOARD: dashboard}}


def _ratio(slo: SLO) -> Document:
    ratio: Document = {"counter": True}
    if slo.sli.good:
        ratio["good"] = _source(slo.sli.good)
    else:
        ratio["bad"] = _source(slo.sli.errors)
    ratio["total"] = _source(slo.sli.total)
    return {
        "apiVersion": API_VERSION,
        "kind": "SLO",
        "metadata": _metadata(slo.id, slo.title, slo.dashboard),
        "spec": {
            "description": slo.description,
            "service": slo.service,
            "indicator": {"metadata": {"name": f"{slo.id}-sli"}, "spec": {"ratioMetric": ratio}},
            "timeWindow": [{"duration": slo.window, "isRolling": True}],
            "budgetingMethod": "Occurrences",
            "objectives": [{"displayName": slo.title, "target": slo.ratio}],
        },
    }


def _threshold(obj: FreshnessObjective) -> Document:
    return {
        "apiVersion": API_VERSION,
        "kind": "SLO",
        "metadata": _metadata(obj.id, obj.title, obj.dashboard),
        "spec": {
            "description": obj.description,
            "service": obj.service,
            "indicator": {
                "metadata": {"name": f"{obj.id}-sli"},
                "spec": {"thresholdMetric": _source(obj.age())},
            },
            "timeWindow": [{"duration": obj.window, "isRolling": True}],
            "budgetingMethod": "Timeslices",
            "objectives": [{
                "displayName": obj.title,
                "op": "lt",
                "value": obj.max_age_seconds,
                "target": round(obj.target / 100, 10),
                "timeSliceWindow": "1h",
            }],
        },
    }


def export_documents(
    slos: tuple[SLO, ...] = CATALOG, freshness: tuple[FreshnessObjective, ...] = (BACKUP_FRESHNESS,)
) -> list[Document]:
    """The Service document, then one SLO document per objective, in catalog order."""
    service: Document = {
        "apiVersion": API_VERSION,
        "kind": "Service",
        "metadata": {"name": SERVICE, "displayName": "Agent mesh"},
        "spec": {"description": "Governance plane for AI agents: identity, trust, policy."},
    }
    return [service, *map(_ratio, slos), *map(_threshold, freshness)]


def _get(doc: Document, *path: str) -> Any:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            name = doc.get("metadata", {}).get("name", "?")
            raise CatalogError(f"openslo SLO {name}: missing {'.'.join(path)}")
        node = node[key]
    return node


def _query(doc: Document, *path: str) -> str:
    return str(_get(doc, *path, "metricSource", "spec", "query"))


def _one(doc: Document) -> Objective:
    name = str(_get(doc, "metadata", "name"))
    common = {
        "id": name,
        "title": str(doc["metadata"].get("displayName", name)),
        "description": str(doc["spec"].get("description", "")),
        "service": str(_get(doc, "spec", "service")),
        "window": str(_get(doc, "spec", "timeWindow")[0]["duration"]),
        "dashboard": doc["metadata"].get("annotations", {}).get(_DASHBOARD, "meshsre-slos"),
    }
    objective = _get(doc, "spec", "objectives")[0]
    indicator = _get(doc, "spec", "indicator", "spec")
    if "thresholdMetric" in indicator:
        names = sorted(series_names(_query(doc, "spec", "indicator", "spec", "thresholdMetric")))
        if len(names) != 1:
            raise CatalogError(f"openslo SLO {name}: threshold query must name one metric")
        return check_freshness(FreshnessObjective(
            timestamp_metric=names[0], max_age_seconds=int(objective["value"]),
            target=round(float(objective["target"]) * 100, 10), **common,
        ))
    ratio = _get(doc, "spec", "indicator", "spec", "ratioMetric")
    sli = SLI(
        total=_query(ratio, "total"),
        errors=_query(ratio, "bad") if "bad" in ratio else "",
        good=_query(ratio, "good") if "good" in ratio else "",
    )
    target = float(objective["target"])
    return validate(SLO(sli=sli, objective=round(target * 100, 10), **common))


def _days(doc: Document) -> str:
    windows = doc["spec"].get("timeWindows") or [{"count": 30, "unit": "Day"}]
    window = windows[0]
    if len(windows) != 1 or str(window.get("unit", "")).lower() != "day":
        raise CatalogError(f"openslo SLO {doc['metadata']['name']}: one time window in days,"
                           f" like count: 30, unit: Day (got {windows})")
    return f"{int(window['count'])}d"


def _v1alpha(doc: Document) -> list[SLO]:
    """OpenSLO v1alpha as Sloth reads it: each of ``spec.objectives`` is an SLO over the
    good and total queries of its ``ratioMetrics``, ``sum(rate(...[{{.window}}]))`` or a
    plain counter; several objectives are named ``<name>-<index>``."""
    name = str(_get(doc, "metadata", "name"))
    objectives = _get(doc, "spec", "objectives")
    out = []
    for i, obj in enumerate(objectives):
        slo_id = name if len(objectives) == 1 else f"{name}-{i}"
        ratio = obj.get("ratioMetrics")
        if not isinstance(ratio, dict):
            raise CatalogError(f"openslo SLO {slo_id}: only ratioMetrics objectives are supported")
        try:
            good, total = (counter_selector(str(ratio[k]["query"])) for k in ("good", "total"))
        except ValueError as exc:
            raise CatalogError(f"openslo SLO {slo_id}: {exc}") from exc
        out.append(validate(SLO(
            id=slo_id, title=str(obj.get("displayName") or doc["metadata"].get("displayName")
                                 or name),
            description=str(doc["spec"].get("description", "")),
            objective=round(float(obj["target"]) * 100, 10), sli=SLI(total=total, good=good),
            service=str(_get(doc, "spec", "service")), window=_days(doc))))
    return out


def import_documents(docs: list[Document]) -> list[Objective]:
    """Objectives from OpenSLO v1 and v1alpha documents (other kinds are skipped); raises
    CatalogError."""
    out: list[Objective] = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "SLO":
            continue
        if doc.get("apiVersion") not in (API_VERSION, V1ALPHA):
            raise CatalogError(f"openslo: unsupported apiVersion {doc.get('apiVersion')!r},"
                               f" want {API_VERSION} or {V1ALPHA}")
        try:
            if doc["apiVersion"] == V1ALPHA:
                out += _v1alpha(doc)
                continue
            out.append(_one(doc))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            if isinstance(exc, CatalogError):
                raise
            name = doc.get("metadata", {}).get("name", "?")
            raise CatalogError(f"openslo SLO {name}: malformed document: {exc!r}") from exc
    return out
