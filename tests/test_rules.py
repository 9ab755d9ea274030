"""The generated Prometheus rules: up to date, accepted and unit-tested by promtool, covered by
tests, and naming only what the mesh exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.backtest.promtool import eval_order
from alerts.catalog import CATALOG, LINKS
from alerts.datatier import SERIES as DATA_TIER_SERIES
from alerts.promql import selectors, series_names
from alerts.rules import BUILD_DIR, HEADER, alert_rules, prometheus_rule, write
from alerts.sloth import SLI_MISSING
from mesh.telemetry import exposed_names

ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = ROOT / "alerts" / "tests"
DASHBOARD_UIDS = ("meshsre-mesh-health", "meshsre-api-red", "meshsre-slos", "meshsre-zones")
# Series that are not mesh metrics but may appear in rules: Prometheus' own.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds"})


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: apt-get install -y prometheus"
    return path


def _rule_files() -> list[Path]:
    return sorted(BUILD_DIR.glob("*.rules.yml"))


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in _rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _unit_tests() -> list[dict[str, Any]]:
    files = sorted(TESTS_DIR.glob("*.yml"))
    return [t for p in files for t in yaml.safe_load(p.read_text())["tests"]]


def test_committed_files_are_exactly_what_the_catalog_generates(tmp_path: Path) -> None:
    fresh = {p.name: p.read_text() for p in write(tmp_path)}
    committed = {p.name: p.read_text() for p in BUILD_DIR.glob("*.y*ml")}
    assert sorted(committed) == sorted(fresh), "run `make alerts`"
    for name, text in fresh.items():
        assert committed[name] == text, f"alerts/build/{name} is stale: run `make alerts`"
        assert text.startswith(HEADER)


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in write(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in write(tmp_path / "b")}
    assert first == second


def test_promtool_accepts_every_rule_file_and_the_prometheusrule_groups(tmp_path: Path) -> None:
    spec = tmp_path / "prometheusrule.rules.yml"
    spec.write_text(yaml.safe_dump({"groups": prometheus_rule()["spec"]["groups"]}))
    files = [*map(str, _rule_files()), str(spec)]
    out = subprocess.run([_promtool(), "check", "rules", *files], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(files)


@pytest.mark.slow
@pytest.mark.parametrize("test_file", sorted(p.name for p in TESTS_DIR.glob("*.yml")))
def test_promtool_unit_tests_pass(test_file: str) -> None:
    out = subprocess.run([_promtool(), "test", "rules", test_file], cwd=TESTS_DIR,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def _annotations_match(rule: dict[str, str], expected: dict[str, str]) -> bool:
    """Every annotation is asserted; those without templating must be verbatim."""
    return set(rule) == set(expected) and all(
        expected[k] == v for k, v in rule.items() if "{{" not in v
    )


def test_every_alert_rule_has_a_firing_case_with_annotations_and_a_quiet_case() -> None:
    tests = [a for t in _unit_tests() for a in t.get("alert_rule_test", [])]
    missing = []
    for rule in alert_rules():
        mine = [a for a in tests if a["alertname"] == rule["alert"]]
        fired = any(
            set(rule["labels"].items()) <= set(e.get("exp_labels", {}).items())
            and _annotations_match(rule["annotations"], e.get("exp_annotations", {}))
            for a in mine for e in a.get("exp_alerts") or []
        )
        quiet = any(not a.get("exp_alerts") for a in mine)
        if not (fired and quiet):
            missing.append(f"{rule['alert']} {rule['labels']}: fired={fired} quiet={quiet}")
    assert not missing, "alerts without promtool tests:\n" + "\n".join(missing)


def test_every_recording_rule_has_its_value_checked_by_a_promtool_test() -> None:
    checked = set()
    for t in _unit_tests():
        for e in t.get("promql_expr_test", []):
            for sample in e.get("exp_samples") or []:
                (sel,) = selectors(sample["labels"])
                slo = next((m.value for m in sel.matchers.matchers if m.name == "sloth_slo"), None)
                checked.add((sel.name, slo))
    missing = {
        (r["record"], r.get("labels", {}).get("sloth_slo"))
        for r in _rules() if "record" in r
    } - checked
    assert not missing, f"recording rules no promtool test checks: {sorted(missing)}"


def test_every_metric_in_every_rule_is_exposed_by_the_mesh_or_recorded_here() -> None:
    recorded = {r["record"] for r in _rules() if "record" in r}
    known = exposed_names() | recorded | PROMETHEUS_SERIES | DATA_TIER_SERIES
    unknown = {
        f"{r.get('alert') or r.get('record')}: {name}"
        for r in _rules() for name in series_names(r["expr"]) if name not in known
    }
    assert not unknown, f"rules name metrics the mesh does not expose: {sorted(unknown)}"


def test_alerts_follow_the_style_rules() -> None:
    for rule in alert_rules():
        name, notes = rule["alert"], rule["annotations"]
        assert re.fullmatch(r"(?:[A-Z][a-z0-9]+)+", name), f"{name}: not CamelCase"
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert "{{" not in notes["summary"] and notes["summary"].endswith("."), name
        assert notes["summary"][0].isupper(), name
        assert "{{" in notes["description"], f"{name}: description is not templated"
        assert notes["runbook_url"] == LINKS.runbook_url(name)
        if "dashboard_url" in notes:
            assert notes["dashboard_url"] in {LINKS.dashboard_url(u) for u in DASHBOARD_UIDS}, name


def test_dashboard_urls_point_at_dashboards_that_exist() -> None:
    built = ROOT / "dashboards" / "build"
    if not built.is_dir():
        pytest.fail("dashboards/build/ missing: run `make dashboards`")
    uids = {json.loads(p.read_text()).get("uid") for p in built.glob("*.json")}
    linked = {r["annotations"]["dashboard_url"].removeprefix("/d/")
              for r in alert_rules() if "dashboard_url" in r["annotations"]}
    assert linked <= uids, f"dashboard_url without a dashboard: {sorted(linked - uids)}"


def test_each_slo_has_one_burn_alert_per_severity_with_both_window_pairs_and_no_for() -> None:
    burns = [r for r in alert_rules() if r["alert"].endswith("BudgetBurn")]
    assert sorted((r["labels"]["slo"], r["labels"]["severity"]) for r in burns) == sorted(
        (s.id, sev) for s in CATALOG for sev in ("page", "ticket"))
    for rule in burns:
        # Labels that change with the pair would make an incident two alerts.
        assert set(rule["labels"]) == {"severity", "sloth_severity", "slo"}
        assert "for" not in rule
        assert rule["expr"].count(" and\n") == 2 and "\nor\n" in rule["expr"]


def test_only_slis_counting_a_histogram_bucket_have_an_sli_missing_alert() -> None:
    missing = {r["labels"]["slo"] for r in alert_rules() if r["alert"] == SLI_MISSING}
    assert missing == {s.id for s in CATALOG if s.sli.bucket}
    assert missing == {"policy-decision-latency", "revocation-propagation"}


def test_every_promtool_test_file_fixes_the_order_of_every_group_recordings_first() -> None:
    for path in sorted(TESTS_DIR.glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        files = [(TESTS_DIR / f).resolve() for f in doc["rule_files"]]
        assert doc.get("group_eval_order") == eval_order(files), path.name


def test_prometheusrule_holds_every_group_in_namespace_agentmesh() -> None:
    doc = yaml.safe_load((BUILD_DIR / "prometheusrule.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert doc["metadata"]["namespace"] == "agentmesh"
    groups = [g for p in _rule_files() for g in yaml.safe_load(p.read_text())["groups"]]
    assert sorted(g["name"] for g in doc["spec"]["groups"]) == sorted(g["name"] for g in groups)
    names = [g["name"] for g in doc["spec"]["groups"]]
    assert len(names) == len(set(names)), "group names must be unique"
