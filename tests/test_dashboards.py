"""The generated dashboards: committed output matches the sources, and it is import-ready."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from alerts.catalog import LINKS
from dashboards.build import BUILD_DIR, CONFIGMAPS, NAMESPACE, all_dashboards, outputs
from dashboards.cli import dashboards
from dashboards.panels import DATASOURCE

ROOT = Path(__file__).resolve().parents[1]
UIDS = ["meshsre-mesh-health", "meshsre-api-red", "meshsre-slos", "meshsre-zones"]


def test_committed_build_matches_a_fresh_regeneration(tmp_path: Path) -> None:
    result = CliRunner().invoke(dashboards, ["build", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    fresh = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text(encoding="utf-8") for p in BUILD_DIR.iterdir()}
    assert sorted(committed) == sorted(fresh), "run `make dashboards` and commit the result"
    for name, text in fresh.items():
        assert committed[name] == text, f"{name} is stale: run `make dashboards`"


def test_rendering_twice_gives_identical_bytes() -> None:
    assert outputs() == outputs()


def test_python_dash_m_dashboards_writes_every_file_in_under_five_seconds(tmp_path: Path
                                                                          ) -> None:
    (tmp_path / "renamed-dashboard.json").write_text("{}")  # a stale leftover
    proc = subprocess.run([sys.executable, "-m", "dashboards", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=5, check=True)
    assert sorted(proc.stdout.split()) == sorted(str(tmp_path / n) for n in outputs())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(outputs())


def test_the_four_dashboards_have_stable_uids_null_ids_and_schema_39() -> None:
    boards = all_dashboards()
    assert [b["uid"] for b in boards] == UIDS
    for b in boards:
        assert b["id"] is None
        assert b["schemaVersion"] == 39
        assert "DO NOT EDIT" in b["description"]
        assert "rows" not in b


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    for b in all_dashboards():
        variable = b["templating"]["list"][0]
        assert (variable["name"], variable["type"], variable["query"]) == (
            "datasource", "datasource", "prometheus")
        for p in b["panels"]:
            if p["type"] == "row":
                continue
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert all(t["datasource"] == DATASOURCE for t in p["targets"])


def test_panels_tile_the_grid_in_reading_order() -> None:
    for b in all_dashboards():
        positions = [(p["gridPos"]["y"], p["gridPos"]["x"]) for p in b["panels"]]
        assert positions == sorted(positions), b["uid"]
        assert [p["id"] for p in b["panels"]] == list(range(1, len(b["panels"]) + 1))


def test_alert_panels_link_to_runbooks() -> None:
    linked = {link["url"] for b in all_dashboards() for p in b["panels"]
              for link in p.get("links", [])}
    assert LINKS.runbook_url("MeshZoneDown") in linked
    assert LINKS.runbook_url("ApiAvailabilityBudgetBurn") in linked
    assert all(LINKS.alert_of(url) for url in linked)


def test_the_slo_dashboard_has_a_row_per_catalog_slo() -> None:
    from alerts.catalog import CATALOG

    slos = next(b for b in all_dashboards() if b["uid"] == "meshsre-slos")
    rows = [p["title"] for p in slos["panels"] if p["type"] == "row"]
    assert rows == ["Overview", *(f"{s.title}: {s.objective:g}% over {s.window}"
                                  for s in CATALOG)]
    exprs = [t["expr"] for p in slos["panels"] for t in p.get("targets", [])]
    for slo in CATALOG:
        assert any(f'ALERTS{{slo="{slo.id}"' in e for e in exprs), slo.id
        # One burn-rate series per recorded window shorter than the period.
        assert sum(f'sloth_id="{slo.sloth_id}"' in e and "group_left" in e for e in exprs) == 7


def test_configmaps_carry_each_dashboard_for_the_grafana_sidecar() -> None:
    text = (BUILD_DIR / CONFIGMAPS).read_text(encoding="utf-8")
    assert text.startswith("# Generated") and "DO NOT EDIT" in text.splitlines()[0]
    docs = list(yaml.safe_load_all(text))
    assert [d["metadata"]["name"] for d in docs] == [f"{u}-dashboard" for u in UIDS]
    for doc, board in zip(docs, all_dashboards(), strict=True):
        assert doc["kind"] == "ConfigMap"
        assert doc["metadata"]["namespace"] == NAMESPACE
        assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
        (key, payload), = doc["data"].items()
        assert key == f"{board['uid']}.json"
        assert json.loads(payload) == board
        # kubectl apply keeps a copy in an annotation limited to 256 KiB.
        assert len(payload) < 200_000


def test_configmaps_pass_the_kubernetes_schema_offline(tmp_path: Path) -> None:
    # A broken copy first, so the check is known to bite.
    broken = tmp_path / "broken.yaml"
    broken.write_text((BUILD_DIR / CONFIGMAPS).read_text(encoding="utf-8").replace(
        "kind: ConfigMap", "kind: ConfigMap\nspec: {}", 1))
    tool = str(Path(sys.executable).parent / "kubernetes-validate")
    for path, code in ((BUILD_DIR / CONFIGMAPS, 0), (broken, 1)):
        proc = subprocess.run([tool, "--strict", "-k", "1.32.0", str(path)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == code, proc.stdout + proc.stderr


def test_grafana_foundation_sdk_loads_every_dashboard_without_losing_what_grafana_needs() -> None:
    sdk = pytest.importorskip("grafana_foundation_sdk.models.dashboard")
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins

    register_default_plugins()
    for b in all_dashboards():
        model = sdk.Dashboard.from_json(b)
        back = json.loads(json.dumps(model, cls=JSONEncoder))
        assert (back["uid"], back["schemaVersion"], back["title"]) == (
            b["uid"], 39, b["title"])
        assert [v["name"] for v in back["templating"]["list"]] == [
            v["name"] for v in b["templating"]["list"]]
        for ours, theirs in zip(b["panels"], back["panels"], strict=True):
            assert theirs["gridPos"] == ours["gridPos"]
            assert theirs["type"] == ours["type"]
            if ours["type"] == "row":
                continue
            assert theirs["datasource"] == DATASOURCE
            assert theirs["fieldConfig"]["defaults"]["unit"] == (
                ours["fieldConfig"]["defaults"]["unit"])
            assert [t["expr"] for t in theirs["targets"]] == [t["expr"] for t in ours["targets"]]
