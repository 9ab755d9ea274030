"""The SLO catalog: burn-rate math, load-time validation, OpenSLO round trip, the `slo` CLI."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest

from alerts.catalog import (
    BACKUP_FRESHNESS,
    CATALOG,
    LINKS,
    LOW_TRAFFIC,
    SLI,
    CatalogError,
    Links,
    burn_rate_windows,
    check_links,
    sli_windows,
    validate,
)
from alerts.openslo import export_documents, import_documents
from alerts.windows import format_duration, seconds
from mesh.telemetry import Metrics
from meshsre.cli import main

API = CATALOG[0]


def test_the_google_windows_give_factors_14_4_6_3_and_1_over_30_days() -> None:
    windows = burn_rate_windows("30d")
    assert [(w.long, w.short) for w in windows] == [
        ("1h", "5m"), ("6h", "30m"), ("1d", "2h"), ("3d", "6h"),
    ]
    assert [w.factor for w in windows] == [14.4, 6.0, 3.0, 1.0]
    assert [w.severity for w in windows] == ["page", "page", "ticket", "ticket"]
    assert [w.exhaustion for w in windows] == ["2d", "5d", "10d", "30d"]


def test_factors_follow_the_period_so_a_28_day_slo_pages_at_13_44() -> None:
    assert burn_rate_windows("28d")[0].factor == pytest.approx(13.44)


def test_sli_windows_are_every_alert_window_shortest_first_then_the_period() -> None:
    assert sli_windows("30d") == ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")


def test_durations_parse_and_format_in_prometheus_units() -> None:
    assert seconds("30m") == 1800
    assert format_duration(30 * 86400 / 14.4) == "2d"
    with pytest.raises(ValueError, match="not a duration"):
        seconds("1h30m")


def test_catalog_has_the_issue_slos_with_unique_ids_and_sloth_labels() -> None:
    assert [(s.id, s.objective) for s in CATALOG] == [
        ("api-availability", 99.9),
        ("registration-availability", 99.9),
        ("handshake-success", 99.9),
        ("policy-decision-latency", 99.0),
        ("revocation-propagation", 99.0),
    ]
    assert all(s.window == "30d" for s in CATALOG)
    assert API.labels == {
        "sloth_id": "agentmesh-api-availability",
        "sloth_service": "agentmesh",
        "sloth_slo": "api-availability",
    }
    assert API.error_budget == 0.001
    assert BACKUP_FRESHNESS.max_age_seconds == 86400


def test_an_objective_of_100_percent_is_rejected_at_load_time() -> None:
    with pytest.raises(CatalogError, match=r"api-availability: objective must be .* below 100%"):
        validate(dataclasses.replace(API, objective=100.0))


def test_a_metric_the_mesh_does_not_expose_is_rejected_by_name() -> None:
    bad = dataclasses.replace(API, sli=SLI(total="agentmesh_requests_total", errors="x_total"))
    with pytest.raises(CatalogError, match="unknown metric 'agentmesh_requests_total'"):
        validate(bad)


def test_a_label_the_metric_does_not_carry_is_rejected() -> None:
    total = 'agentmesh_handshake_total{code="500"}'
    bad = dataclasses.replace(API, sli=SLI(total=total, errors=total))
    with pytest.raises(CatalogError, match="has no label 'code'"):
        validate(bad)


def test_an_objective_where_the_fast_page_can_never_fire_is_rejected() -> None:
    # 90%: a 10% budget times 14.4 needs an error ratio of 1.44, above the maximum of 1.
    with pytest.raises(CatalogError, match="page-quick alert can never fire"):
        validate(dataclasses.replace(API, objective=90.0))


def test_a_period_no_longer_than_the_slowest_alert_window_is_rejected() -> None:
    with pytest.raises(CatalogError, match="window 3d is not longer"):
        validate(dataclasses.replace(API, window="3d"))


def test_an_sli_with_both_good_and_errors_is_rejected() -> None:
    total = "agentmesh_policy_decision_duration_seconds_count"
    with pytest.raises(CatalogError, match="exactly one of errors= or good="):
        validate(dataclasses.replace(API, sli=SLI(total=total, errors=total, good=total)))


def _rendered_le(metric: str) -> set[str]:
    """le values the real runtime exposes for one of its histograms."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    histogram = {
        "agentmesh_policy_decision_duration_seconds": metrics.decision_duration,
        "agentmesh_revocation_propagation_seconds": metrics.propagation,
    }[metric]
    labels = {"agentmesh_policy_decision_duration_seconds": ("standard",)}.get(metric, ("poll",))
    histogram.labels(*labels).observe(0.001)
    text = generate_latest(registry).decode()
    return set(re.findall(rf'^{metric}_bucket{{.*le="([^"]+)"', text, re.M))


@pytest.mark.parametrize("slo_id, threshold", [
    ("policy-decision-latency", "0.005"), ("revocation-propagation", "5.0"),
])
def test_latency_slis_select_the_bucket_the_runtime_really_exposes(
    slo_id: str, threshold: str
) -> None:
    slo = next(s for s in CATALOG if s.id == slo_id)
    metric = slo.sli.total.removesuffix("_count")
    exposed = _rendered_le(metric)
    assert threshold in exposed
    matcher = re.search(r'le(=~?)"([^"]+)"', slo.sli.good)
    assert matcher is not None
    op, value = matcher.groups()
    chosen = {le for le in exposed if (re.fullmatch(value, le) if op == "=~" else le == value)}
    assert chosen == {threshold}
    if op == "=~":  # Prometheus 3 rewrites le="5.0" to le="5": both must match.
        assert re.fullmatch(value, threshold.removesuffix(".0"))


def test_openslo_export_then_import_gives_back_the_same_catalog() -> None:
    docs = export_documents()
    text = yaml.safe_dump_all(docs, sort_keys=False)
    assert [d["kind"] for d in docs] == ["Service"] + ["SLO"] * (len(CATALOG) + 1)
    assert all(d["apiVersion"] == "openslo/v1" for d in docs)
    assert import_documents(list(yaml.safe_load_all(text))) == [*CATALOG, BACKUP_FRESHNESS]


def test_openslo_import_refuses_an_unsupported_api_version() -> None:
    doc = export_documents()[1] | {"apiVersion": "openslo/v2alpha"}
    with pytest.raises(CatalogError, match="unsupported apiVersion 'openslo/v2alpha'"):
        import_documents([doc])


def test_cli_exports_a_directory_that_cli_import_reads_back(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["slo", "export", "--openslo", str(tmp_path / "oslo")])
    assert out.exit_code == 0, out.output
    files = sorted((tmp_path / "oslo").glob("*.yaml"))
    assert len(files) == len(CATALOG) + 2
    back = runner.invoke(main, ["slo", "import", *map(str, files)])
    assert back.exit_code == 0, back.output
    assert [line.split()[0] for line in back.output.splitlines()] == sorted(
        [s.id for s in CATALOG] + [BACKUP_FRESHNESS.id]
    )


def test_cli_import_names_the_unknown_metric_and_exits_1(tmp_path: Path) -> None:
    runner = CliRunner()
    text = runner.invoke(main, ["slo", "export", "--openslo", "-"]).output
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("agentmesh_policy_decision_duration_seconds_count", "nope_count"))
    out = runner.invoke(main, ["slo", "import", str(bad)])
    assert out.exit_code == 1
    assert "slo policy-decision-latency: unknown metric 'nope_count'" in out.output
    assert "Traceback" not in out.output


def test_link_patterns_hold_exactly_their_one_placeholder() -> None:
    team = Links(runbook="https://wiki.example/oncall/{alert}", dashboard="/d/{uid}")
    assert check_links(team).runbook_url("MeshZoneDown") == \
        "https://wiki.example/oncall/MeshZoneDown"
    with pytest.raises(ValueError, match=r"must hold \{alert\}"):
        check_links(Links(runbook="https://wiki.example/oncall/", dashboard="/d/{uid}"))
    with pytest.raises(ValueError, match=r"must hold \{uid\}"):
        check_links(Links(runbook=team.runbook, dashboard="/d/{uid}/{panel}"))
    assert LINKS.alert_of(LINKS.runbook_url("MeshZoneDown")) == "MeshZoneDown"
    assert LINKS.alert_of("https://elsewhere.example/MeshZoneDown.md") is None


def test_one_link_setting_moves_every_alert_and_panel_link(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from alerts import rules
    from dashboards import panels
    from dashboards.build import all_dashboards

    team = Links(runbook="https://wiki.example/oncall/{alert}",
                 dashboard="https://grafana.example/d/{uid}")
    monkeypatch.setattr(rules, "LINKS", team)
    monkeypatch.setattr(panels, "LINKS", team)
    notes = [r["annotations"] for r in rules.alert_rules()]
    assert all(n["runbook_url"].startswith("https://wiki.example/oncall/") for n in notes)
    assert all(n["dashboard_url"].startswith("https://grafana.example/d/") for n in notes
               if "dashboard_url" in n)
    links = [link["url"] for b in all_dashboards() for p in b["panels"]
             for link in p.get("links", [])]
    assert links and all(u.startswith("https://wiki.example/oncall/") for u in links)


def test_the_low_traffic_policy_asks_every_window_pair_for_two_bad_events() -> None:
    from alerts.rules import alert_rules

    assert (LOW_TRAFFIC.min_errors, LOW_TRAFFIC.min_events) == (2, 0)
    assert all(s.low_traffic == LOW_TRAFFIC for s in CATALOG)
    assert LOW_TRAFFIC.allows(2, 2) and not LOW_TRAFFIC.allows(1, 1000)
    burns = [r for r in alert_rules() if r["alert"].endswith("BudgetBurn")]
    assert all(r["expr"].count(">= 2") == 2 for r in burns)


def test_only_a_bucket_of_the_total_histogram_makes_a_bucket_sli() -> None:
    total = "agentmesh_policy_decision_duration_seconds_count"
    assert SLI(total=total, good='agentmesh_policy_decision_duration_seconds_bucket{le="0.005"}'
               ).bucket
    requests = "agentmesh_api_request_duration_seconds_count"
    assert not SLI(total=requests, good=f'{requests}{{code!~"5.."}}').bucket
    assert not API.sli.bucket
    # A counter's missing good series means no good events; a bucket's means a broken SLI.
    assert "or vector(0)" in SLI(total=requests, good=f'{requests}{{code!~"5.."}}'
                                 ).error_ratio("5m")
    assert "or vector(0)" not in SLI(total=total, good=f"{total[:-6]}_bucket{{le=\"0.005\"}}"
                                     ).error_ratio("5m")
