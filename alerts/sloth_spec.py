"""Import of Sloth's own SLO spec (``version: "prometheus/v1"``) into the catalog's types.

A team moving from Sloth brings its SLO files as they are. Each SLO's ``sli.events`` queries
(``sum(rate(METRIC{...}[{{.window}}]))``) become the catalog's errors/total counters, checked
against the telemetry contract like any catalog SLO, so an SLO on a metric the mesh does not
expose is refused with the metric's name. Sloth's ``raw`` and ``plugin`` SLIs have no
counters to read and are refused; its alerting names and labels are Sloth's business (the
catalog names and routes its alerts itself).
"""

from __future__ import annotations

from typing import Any

from alerts.catalog import SERVICE, SLI, SLO, CatalogError, validate
from alerts.promql import counter_selector

__all__ = ["VERSION", "import_sloth", "is_sloth"]

VERSION = "prometheus/v1"
Document = dict[str, Any]


def is_sloth(doc: Any) -> bool:
    return isinstance(doc, dict) and "version" in doc and "slos" in doc


def _title(name: str) -> str:
    return name.replace("-", " ").replace("_", " ").capitalize()


def _one(service: str, spec: Any) -> SLO:
    if not isinstance(spec, dict) or not spec.get("name"):
        raise CatalogError("sloth spec: an SLO without a name")
    name = str(spec["name"])
    where = f"sloth SLO {name}"
    sli = spec.get("sli") or {}
    events = sli.get("events") if isinstance(sli, dict) else None
    if not isinstance(events, dict):
        kind = next(iter(sli), "none") if isinstance(sli, dict) else "none"
        raise CatalogError(f"{where}: sli.{kind} is not supported: give sli.events (error_query"
                           " and total_query) over the mesh's counters")
    try:
        errors = counter_selector(str(events["error_query"]))
        total = counter_selector(str(events["total_query"]))
        objective = float(spec["objective"])
    except KeyError as exc:
        raise CatalogError(f"{where}: missing {exc.args[0]}") from exc
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc}") from exc
    return validate(SLO(
        id=name, title=_title(name), description=str(spec.get("description", "")),
        objective=objective, sli=SLI(total=total, errors=errors), service=service))


def import_sloth(doc: Document) -> list[SLO]:
    """The SLOs of one Sloth ``prometheus/v1`` document; CatalogError naming what is wrong."""
    if doc.get("version") != VERSION:
        raise CatalogError(f"sloth spec: unsupported version {doc.get('version')!r}, want"
                           f" {VERSION!r}")
    slos = doc.get("slos")
    if not isinstance(slos, list) or not slos:
        raise CatalogError("sloth spec: no SLO under slos:")
    service = str(doc.get("service") or SERVICE)
    return [_one(service, spec) for spec in slos]
