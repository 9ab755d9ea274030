"""`meshsre slo import` of the specs a team brings from Sloth: its own prometheus/v1 format and
OpenSLO v1alpha, for the mesh's metrics; other metrics are refused by name."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from alerts.catalog import SLI, CatalogError
from alerts.openslo import import_documents
from alerts.promql import counter_selector
from alerts.rules import render, slo_file
from alerts.sloth_spec import import_sloth
from meshsre.cli import main

DATA = Path(__file__).parent / "testdata" / "slo"


def _docs(name: str) -> list[dict[str, object]]:
    return list(yaml.safe_load_all((DATA / name).read_text()))


def test_a_sloth_spec_over_the_mesh_counters_becomes_errors_total_slos() -> None:
    sloth, _ = _docs("sloth-mesh.yml")
    verify, tools = import_sloth(sloth)
    assert (verify.id, verify.objective, verify.service, verify.window) == (
        "verify-availability", 99.5, "agentmesh", "30d")
    assert verify.sli == SLI(
        total='agentmesh_api_request_duration_seconds_count{route="/v1/credentials/verify"}',
        errors='agentmesh_api_request_duration_seconds_count{route="/v1/credentials/verify",'
               'code=~"5.."}')
    assert tools.sli.errors == 'agentmesh_tool_call_total{decision="deny"}'


def test_an_openslo_v1alpha_objective_becomes_a_good_total_slo_in_its_window() -> None:
    _, alpha = _docs("sloth-mesh.yml")
    (slo,) = import_documents([alpha])
    assert (slo.id, slo.title, slo.objective, slo.window) == (
        "decide-latency-25ms", "Policy decisions within 25 ms", 99.5, "28d")
    assert slo.sli.good == 'agentmesh_policy_decision_duration_seconds_bucket{le="0.025"}'
    assert slo.sli.bucket


def test_imported_slos_generate_rules_promtool_accepts(tmp_path: Path) -> None:
    sloth, alpha = _docs("sloth-mesh.yml")
    files = []
    for slo in [*import_sloth(sloth), *import_documents([alpha])]:
        path = tmp_path / f"{slo.id}.rules.yml"
        path.write_text(render(slo_file(slo)))
        files.append(str(path))
    promtool = shutil.which("promtool")
    assert promtool
    out = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_cli_lists_sloth_and_v1alpha_slos_together() -> None:
    out = CliRunner().invoke(main, ["slo", "import", str(DATA / "sloth-mesh.yml")])
    assert out.exit_code == 0, out.output
    assert [line.split()[0] for line in out.output.splitlines()] == [
        "verify-availability", "tool-calls-allowed", "decide-latency-25ms"]


def test_a_sloth_spec_for_another_services_metrics_is_refused_naming_the_metric() -> None:
    out = CliRunner().invoke(main, ["slo", "import", str(DATA / "sloth-other-service.yml")])
    assert out.exit_code == 1
    assert "sloth-other-service.yml: slo requests-availability: unknown metric" \
        " 'http_request_duration_seconds_count': not in mesh.telemetry.CONTRACT" in out.output
    assert "Traceback" not in out.output


@pytest.mark.parametrize(("sli", "problem"), [
    ({"raw": {"error_ratio_query": "x"}}, "sli.raw is not supported: give sli.events"),
    ({"plugin": {"id": "x"}}, "sli.plugin is not supported"),
    ({"events": {"error_query": "sum(rate(a[{{.window}}])) / 2",
                 "total_query": "sum(rate(a[{{.window}}]))"}},
     "is not sum(rate(METRIC{...}[{{.window}}])) over one counter"),
    ({"events": {"total_query": "sum(rate(a[{{.window}}]))"}}, "missing error_query"),
])
def test_a_sloth_sli_without_counters_to_read_is_refused_with_the_reason(
        sli: dict[str, object], problem: str) -> None:
    doc = {"version": "prometheus/v1", "service": "s",
           "slos": [{"name": "x", "objective": 99.9, "sli": sli}]}
    with pytest.raises(CatalogError) as caught:
        import_sloth(doc)
    assert str(caught.value).startswith("sloth SLO x: ")
    assert problem in str(caught.value)


def test_a_sloth_spec_of_an_unknown_version_is_refused() -> None:
    with pytest.raises(CatalogError, match="unsupported version 'prometheus/v2'"):
        import_sloth({"version": "prometheus/v2", "slos": [{"name": "x"}]})


def test_the_counter_of_an_events_query_is_read_from_rate_increase_or_a_bare_selector() -> None:
    assert counter_selector("sum(rate(a_total{b=\"c\"}[{{ .window }}]))") == 'a_total{b="c"}'
    assert counter_selector("sum(increase(a_total[{{.window}}]))") == "a_total"
    assert counter_selector("a_total") == "a_total"
    with pytest.raises(ValueError, match="not sum"):
        counter_selector("sum by (zone) (rate(a_total[{{.window}}]))")
