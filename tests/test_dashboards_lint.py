"""Static checks of the dashboards against the telemetry contract, the generated alert rules
and Grafana's import rules; and proof that the lint catches each mistake it claims to."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafanalib.core import Dashboard, Target, TimeSeries

from alerts.catalog import LINKS
from alerts.datatier import SERIES as DATA_TIER_SERIES
from dashboards.build import all_dashboards
from dashboards.layout import render
from dashboards.lint import check_query, lint_dashboard, metric_names, queries
from mesh.telemetry import CONTRACT, exposed_names

ROOT = Path(__file__).resolve().parents[1]
BOARDS = {b["uid"]: b for b in all_dashboards()}


def _rule_files() -> list[dict[str, Any]]:
    files = sorted((ROOT / "alerts" / "build").glob("*.rules.yml"))
    assert files, "alerts/build/*.rules.yml missing: run `make alerts`"
    return [yaml.safe_load(f.read_text(encoding="utf-8")) for f in files]


def _rules() -> list[dict[str, Any]]:
    return [r for doc in _rule_files() for g in doc["groups"] for r in g["rules"]]


def _used_metrics() -> set[str]:
    return {m for b in BOARDS.values() for _, q in queries(b) for m in metric_names(q)}


def test_every_dashboard_passes_the_lint() -> None:
    assert [p for b in BOARDS.values() for p in lint_dashboard(b)] == []


def test_every_query_names_only_contract_metrics_up_alerts_and_recorded_slo_rules() -> None:
    recorded = {r["record"] for r in _rules() if "record" in r}
    prometheus = {"up", "scrape_duration_seconds", "ALERTS"}  # Prometheus's own series
    # Patroni's and etcd's: test_datatier.py checks the real endpoints expose them.
    allowed = exposed_names() | prometheus | DATA_TIER_SERIES
    allowed |= {r for r in recorded if r.startswith("slo")}
    assert _used_metrics() - allowed == set()


def test_every_slo_rule_a_panel_reads_is_recorded_by_the_generated_rules() -> None:
    recorded = {r["record"] for r in _rules() if "record" in r}
    used = {m for m in _used_metrics() if m.startswith("slo:")}
    assert used, "the SLO dashboard reads no slo:* rule"
    assert used - recorded == set()


def test_every_metric_family_of_the_contract_is_on_some_dashboard() -> None:
    used = _used_metrics()
    missing = [m.name for m in CONTRACT if not set(m.samples) & used]
    assert missing == []


def test_every_runbook_link_names_an_alert_of_the_generated_rules() -> None:
    alerts = {r["alert"] for r in _rules() if "alert" in r}
    linked = {LINKS.alert_of(link["url"])
              for b in BOARDS.values() for p in b["panels"] for link in p.get("links", [])}
    assert linked - alerts == set()


def test_every_runbook_link_points_at_a_runbook_in_the_repository() -> None:
    urls = {link["url"] for b in BOARDS.values() for p in b["panels"]
            for link in p.get("links", [])}
    assert urls
    missing = [u for u in sorted(urls)
               if not (ROOT / "runbooks" / f"{LINKS.alert_of(u)}.md").is_file()]
    assert missing == []


def test_every_alert_pointing_at_a_dashboard_is_linked_from_one_of_its_panels() -> None:
    for rule in _rules():
        url = rule.get("annotations", {}).get("dashboard_url")
        if not url:
            continue
        uid = url.rsplit("/", 1)[-1]
        assert uid in BOARDS, f"{rule['alert']} points at unknown dashboard {url}"
        links = {link["url"] for p in BOARDS[uid]["panels"] for link in p.get("links", [])}
        assert rule["annotations"]["runbook_url"] in links, (rule["alert"], uid)


@pytest.mark.parametrize(("query", "problem"), [
    ("agentmesh_handshake_total", "counter agentmesh_handshake_total is not wrapped"),
    ("histogram_quantile(0.9, agentmesh_storage_operation_duration_seconds_bucket)",
     "counter agentmesh_storage_operation_duration_seconds_bucket is not wrapped"),
    ("rate(agentmesh_registry_size[$__rate_interval])", "rate() of agentmesh_registry_size"),
    ("sum(rate(agentmesh_handshake_total[5m]))", "fixed range [5m]"),
    ("sum(agentmesh_handshakes_total)", "unknown metric agentmesh_handshakes_total"),
    ('rate(agentmesh_handshake_total{reason="x"}[$__rate_interval])', "has no label 'reason'"),
    ('up{job=~"$job"} == 1 and {__name__="up"}', "without a literal metric name"),
    ("sum(rate(agentmesh_handshake_total[$__rate_interval])", "cannot parse"),
])
def test_the_lint_reports_a_bad_query(query: str, problem: str) -> None:
    assert any(problem in p for p in check_query(query)), check_query(query)


def test_the_lint_accepts_variables_gauge_histograms_and_the_front_door() -> None:
    assert check_query('max by (le) (agentmesh_trust_score_bucket{zone=~"$zone"})') == []
    assert check_query("sum(rate(haproxy_frontend_http_requests_total[$__rate_interval]))") == []
    assert check_query('slo:sli_error:ratio_rate5m{sloth_id="${slo}"}') == []


def _mutated(change: str) -> dict[str, Any]:
    board = copy.deepcopy(BOARDS["meshsre-zones"])
    panel = board["panels"][1]
    if change == "unit":
        panel["fieldConfig"]["defaults"]["unit"] = ""
    elif change == "description":
        del panel["description"]
    elif change == "datasource":
        panel["datasource"] = "Prometheus"
    elif change == "target datasource":
        panel["targets"][0]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    elif change == "gridPos":
        panel["gridPos"] = None
    elif change == "overlap":
        panel["gridPos"] = dict(board["panels"][2]["gridPos"])
    elif change == "id":
        board["id"] = 7
    elif change == "schemaVersion":
        board["schemaVersion"] = 27
    elif change == "variable":
        board["templating"]["list"] = board["templating"]["list"][1:]
    elif change == "runbook":
        panel["links"] = [{"title": "Runbook: X", "url": "https://wiki.example/X"}]
    return board


@pytest.mark.parametrize(("change", "problem"), [
    ("unit", "no unit"),
    ("description", "no description"),
    ("datasource", "datasource 'Prometheus' is not"),
    ("target datasource", "query A: datasource"),
    ("gridPos", "no explicit gridPos"),
    ("overlap", "overlaps"),
    ("id", "id must be null"),
    ("schemaVersion", "schemaVersion 27 is not 39"),
    ("variable", "no `datasource` variable"),
    ("runbook", "does not fit the catalog's pattern https://github.com/meshsre/meshsre/blob/main"),
])
def test_the_lint_reports_a_broken_dashboard(change: str, problem: str) -> None:
    problems = lint_dashboard(_mutated(change))
    assert any(problem in p for p in problems), problems


def test_a_dashboard_written_with_plain_grafanalib_defaults_fails_the_lint() -> None:
    # What grafanalib 0.7.1 produces when its defaults are trusted: the reason panels.py exists.
    plain = Dashboard(title="plain", uid="plain", panels=[TimeSeries(
        title="t", dataSource="Prometheus", targets=[Target(expr="agentmesh_handshake_total")])])
    problems = "\n".join(lint_dashboard(render(plain)))
    for expected in ("schemaVersion 12 is not 39", "no explicit gridPos", "no unit",
                     "no description", "no `datasource` variable",
                     "counter agentmesh_handshake_total is not wrapped"):
        assert expected in problems
