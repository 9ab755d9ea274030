"""The alert backtest: its window arithmetic, its series, and the matrix run through promtool.

The full matrix runs once (``matrix`` fixture, about a minute): it must reproduce the committed
``alerts/build/backtest.json`` and pass every gate, which is how CI runs the backtest.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from alerts.backtest import JSON_FILE, SLO_MATRIX, SYMPTOM_MATRIX, BacktestError, backtest
from alerts.backtest.arithmetic import expected, should, workbook_detection
from alerts.backtest.matrix import classes, run
from alerts.backtest.scenarios import Scenario, Stretch
from alerts.backtest.series import encode, labels_for, slo_series
from alerts.backtest.timeline import PAGE, TICKET, timeline
from alerts.catalog import CATALOG
from alerts.rules import BUILD_DIR, alert_rules
from meshsre.cli import main

API, LATENCY = CATALOG[0], CATALOG[3]
SYMPTOM_ALERTS = sorted({r["alert"] for r in yaml.safe_load(
    (BUILD_DIR / "mesh.rules.yml").read_text())["groups"][1]["rules"]})


def _scenario(name: str) -> Scenario:
    return next(s for s in SLO_MATRIX if s.name == name)


@pytest.mark.parametrize("burn", [20.0, 36.0, 100.0, 1000.0])
def test_the_window_arithmetic_detects_a_constant_burn_when_the_workbook_formula_says(
        burn: float) -> None:
    scenario = Scenario("x", "x", (Stretch(60, ratio=min(1.0, burn * API.error_budget)),))
    line = timeline(scenario, API, PAGE)
    firing = expected(API, line, "page")
    formula = workbook_detection(API, "page", min(1.0, burn * API.error_budget))
    assert firing is not None and formula is not None
    # The formula gives the instant the ratio reaches the factor; the rules compare strictly
    # and evaluate once a minute on whole minutes of counts: the next minute fires.
    assert firing.detection(line.fault_start) == formula // 60 + 1


def test_the_workbook_detects_a_full_outage_of_a_999_slo_in_52_seconds() -> None:
    assert workbook_detection(API, "page", 1.0) == pytest.approx(51.84)
    assert workbook_detection(LATENCY, "page", 1.0) == pytest.approx(518.4)
    assert workbook_detection(API, "page", 0.006) is None  # 6x: no page pair passes


def test_the_budget_calls_for_a_page_only_beyond_2_percent_in_an_hour_or_5_in_six() -> None:
    for burn, minutes, page in ((14.4, 60, False), (15, 60, True), (6, 360, False),
                                (6.1, 360, True), (36, 20, False), (36, 60, True)):
        line = timeline(Scenario("x", "x", (Stretch(minutes, burn=burn),)), API, PAGE)
        assert should(API, line, "page") is page, (burn, minutes)


def test_a_burn_of_exactly_a_pair_factor_never_fires_it_as_the_rules_compare_strictly() -> None:
    for slo in (API, LATENCY):
        line = timeline(_scenario("burn-6x"), slo, PAGE)
        assert expected(slo, line, "page") is None
        assert expected(slo, timeline(_scenario("burn-1x"), slo, TICKET), "ticket") is None


def test_one_failed_request_pages_by_budget_but_not_under_the_low_traffic_policy() -> None:
    line = timeline(_scenario("low-10-per-h-one-failure"), API, PAGE)
    assert should(API, line, "page", policy=False)
    assert not should(API, line, "page")
    assert expected(API, line, "page") is None
    bare = dataclasses.replace(API, low_traffic=dataclasses.replace(API.low_traffic,
                                                                     min_errors=0))
    assert expected(bare, line, "page") is not None


def test_series_labels_come_from_the_sli_selectors_and_the_telemetry_contract() -> None:
    name, ok = labels_for([API.sli.total], API.sli.errors)
    _, bad = labels_for([API.sli.total, API.sli.errors])
    assert name == "agentmesh_api_request_duration_seconds_count"
    assert ok["code"] == "200" and bad["code"] == "500"
    assert ok["route"] == bad["route"] == "/v1/agents"
    _, good = labels_for([LATENCY.sli.good])
    assert good["le"] == "0.005"
    revocation = next(s for s in CATALOG if s.id == "revocation-propagation")
    assert labels_for([revocation.sli.good])[1]["le"] == "5.0"


def test_a_selector_no_known_label_value_fits_is_refused_by_name() -> None:
    with pytest.raises(BacktestError, match="no known value of label 'code'"):
        labels_for(['agentmesh_api_request_duration_seconds_count{code="999"}',
                    'agentmesh_api_request_duration_seconds_count{code!="999"}'])


def test_promtool_notation_counts_runs_missing_samples_and_markers() -> None:
    assert encode([0, 5, 10, 15, None, None, "stale", None, 3, 3, 3, 7]) == \
        "0+5x3 _x2 stale _ 3+0x2 7"


def test_a_restarted_replica_shows_its_error_series_again_only_with_its_next_error() -> None:
    line = timeline(_scenario("counter-reset"), API, PAGE)
    series = dict(slo_series(API, line, _scenario("counter-reset")))
    zone_a_errors = next(v for s, v in series.items() if 'zone="a"' in s and 'code="500"' in s)
    assert "stale" in zone_a_errors.split()
    zone_b_errors = next(v for s, v in series.items() if 'zone="b"' in s and 'code="500"' in s)
    assert "stale" not in zone_b_errors.split()


def test_slos_whose_rules_differ_only_by_names_and_selectors_share_one_run() -> None:
    runs = {slo: by.id for slo, by in classes(CATALOG).items()}
    assert runs == {"api-availability": "api-availability",
                    "registration-availability": "api-availability",
                    "handshake-success": "api-availability",
                    "policy-decision-latency": "policy-decision-latency",
                    "revocation-propagation": "policy-decision-latency"}


def test_every_symptom_alert_has_a_scenario_where_it_fires_and_one_where_it_stays_quiet() -> None:
    fires = {a for s in SYMPTOM_MATRIX for a in s.fires}
    quiet = {s.name for s in SYMPTOM_MATRIX if not s.fires}
    assert set(SYMPTOM_ALERTS) <= fires, "add a Symptom to alerts/backtest/symptoms.py"
    assert quiet, "every alert needs a scenario where it must stay quiet"
    names = [s.name for s in SLO_MATRIX] + [s.name for s in SYMPTOM_MATRIX]
    assert len(names) == len(set(names))


def test_every_slo_alert_of_the_rules_is_in_the_matrix() -> None:
    slo_alerts = {r["alert"] for r in alert_rules() if "slo" in r["labels"]}
    assert slo_alerts == {s.alert_name for s in CATALOG} | {"MeshSliMissing"}


@pytest.fixture(scope="module")
def matrix() -> dict[str, Any]:
    return backtest()


@pytest.mark.slow
def test_the_backtest_passes_every_gate(matrix: dict[str, Any]) -> None:
    failed = [f"{g['name']}: {g['failures']}" for g in matrix["gates"] if not g["passed"]]
    assert not failed
    assert matrix["pages"]["recall"] == 1.0 and matrix["pages"]["precision"] >= 0.95


@pytest.mark.slow
def test_the_committed_backtest_is_what_the_rules_measure(matrix: dict[str, Any]) -> None:
    committed = json.loads((BUILD_DIR / JSON_FILE).read_text())
    assert committed == json.loads(json.dumps(matrix)), \
        "alerts/build/backtest.json is stale: run `make alerts`"


@pytest.mark.slow
def test_an_slo_measured_through_its_own_file_matches_its_class(
        matrix: dict[str, Any]) -> None:
    slo = next(s for s in CATALOG if s.id == "registration-availability")
    names = ("outage", "low-10-per-h-outage")
    cells = run([slo], [s for s in SLO_MATRIX if s.name in names], [], jobs=2, shared=False)
    own = {(c.scenario, c.severity): (c.detection(c.measured), c.reset(c.measured))
           for c in cells}
    shared = {(c["scenario"], c["severity"]): (c["measured"]["detection_s"] // 60
                                               if c["measured"]["fired"] else None,
                                               c["measured"]["reset_s"] // 60
                                               if c["measured"]["reset_s"] is not None else None)
              for c in matrix["cells"] if c["slo"] == slo.id and c["scenario"] in names}
    assert own == shared


@pytest.mark.slow
def test_a_page_with_a_for_clause_fails_the_outage_gate(tmp_path: Path) -> None:
    doc = yaml.safe_load((BUILD_DIR / "slo-api-availability.rules.yml").read_text())
    for rule in doc["groups"][2]["rules"]:
        if rule["labels"]["severity"] == "page":
            rule["for"] = "5m"
    (tmp_path / "slo-api-availability.rules.yml").write_text(yaml.safe_dump(doc))
    shutil.copy(BUILD_DIR / "mesh.rules.yml", tmp_path)
    result = backtest([API], [_scenario("outage")], [], rules_dir=tmp_path)
    gate = next(g for g in result["gates"] if g["name"] == "outage-pages-in-time")
    assert not gate["passed"]
    assert "api-availability: 360 s" in gate["failures"][0]


def test_the_cli_names_an_unknown_slo_and_exits_2() -> None:
    out = CliRunner().invoke(main, ["alerts", "backtest", "--slo", "nope"])
    assert out.exit_code == 2
    assert "unknown slo nope" in out.output


def test_the_cli_says_which_rule_file_is_missing(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["alerts", "backtest", "--rules", str(tmp_path)])
    assert out.exit_code == 1
    assert f"{tmp_path}/mesh.rules.yml does not exist" in out.output
    assert "Traceback" not in out.output


@pytest.mark.slow
def test_the_cli_writes_the_json_and_the_table_of_the_chosen_scenarios(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["alerts", "backtest", "--slo", "api-availability",
                                    "--scenario", "outage", "--scenario", "zone-down",
                                    "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    doc = json.loads((tmp_path / JSON_FILE).read_text())
    assert {c["scenario"] for c in doc["cells"]} == {"outage", "zone-down"}
    assert "| outage | ✓ 1m / 30m | ✓ 1h00m / 6h30m |" in out.output


@pytest.mark.parametrize(("args", "problem"), [
    (["--low-traffic", "sometimes"], "use off, min-errors=N or min-events=N"),
    (["--for", "page=soon"], "not a duration like 5m"),
    (["--for", "warning=5m"], "the severity is page or ticket"),
])
def test_the_cli_refuses_a_what_if_it_cannot_build(args: list[str], problem: str) -> None:
    out = CliRunner().invoke(main, ["alerts", "backtest", *args])
    assert out.exit_code == 2
    assert problem in out.output


@pytest.mark.slow
def test_a_what_if_for_on_the_pages_is_measured_and_fails_the_outage_gate(
        tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["alerts", "backtest", "--for", "page=5m", "--slo",
                                    "api-availability", "--scenario", "outage", "--quiet",
                                    "--out", str(tmp_path)])
    assert out.exit_code == 1
    doc = json.loads((tmp_path / JSON_FILE).read_text())
    assert doc["rules"] == "the catalog's rules with --for page=5m"
    assert "api-availability: 360 s > 171.84 s" in out.output
