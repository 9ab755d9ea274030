"""The experiment files: valid for Chaos Toolkit itself (its library and its CLI), and built the
way the drills need (both controls, an undo for every fault, tolerances from the catalog)."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed, InvalidActivity
from chaoslib.experiment import ensure_experiment_is_valid
from chaoslib.loader import load_experiment

from alerts.catalog import CATALOG
from chaos import runstate, steady, store
from chaos.runner import EXPERIMENTS, experiment_path
from mesh.process import ADMIN_TOKEN, MeshProcess

CHAOS = str(Path(sys.executable).with_name("chaos"))


def _experiment(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(experiment_path(name).read_text())
    return data


def _activities(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    hypothesis = experiment.get("steady-state-hypothesis", {}).get("probes", [])
    return [*hypothesis, *experiment["method"], *experiment.get("rollbacks", [])]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_passes_chaos_toolkits_own_validation(name: str) -> None:
    ensure_experiment_is_valid(load_experiment(str(experiment_path(name))))


def test_the_chaos_cli_validates_every_experiment_with_an_empty_environment(
    tmp_path: Path,
) -> None:
    for name in EXPERIMENTS:
        log = str(tmp_path / "chaostoolkit.log")  # by default it lands in the working directory
        done = subprocess.run([CHAOS, "--no-version-check", "--log-file", log, "validate",
                               str(experiment_path(name))],
                              capture_output=True, text=True, timeout=60, env={})
        assert done.returncode == 0, done.stdout + done.stderr
        assert "experiment looks valid" in (done.stdout + done.stderr).lower()


def test_validation_rejects_an_activity_whose_function_does_not_exist(tmp_path: Path) -> None:
    experiment = _experiment("az-failure")
    experiment["method"][1]["provider"]["func"] = "fail_zones"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(experiment))
    with pytest.raises(InvalidActivity, match="fail_zones"):
        ensure_experiment_is_valid(load_experiment(str(path)))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_runs_the_clock_and_the_load_and_names_its_drill(name: str) -> None:
    experiment = _experiment(name)
    assert experiment["configuration"]["drill"] == name
    modules = [c["provider"]["module"] for c in experiment["controls"]]
    assert modules == ["chaos.control", "chaos.load"]  # the clock resets the notes first
    extension = next(e for e in experiment["extensions"] if e["name"] == "meshsre")
    assert extension["record"] == f"chaos-{name}.json"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_fault_has_a_rollback_and_every_rollback_can_run_twice(name: str) -> None:
    experiment = _experiment(name)
    clock = experiment["controls"][0]["provider"]["arguments"]
    method = [a["name"] for a in experiment["method"]]
    rollbacks = [a["name"] for a in experiment["rollbacks"]]
    assert set(clock["faults"]) <= set(method)
    assert set(clock["recoveries"]) <= set(method) | set(rollbacks)
    assert rollbacks[-1] == "stop-load-if-still-running"
    # Rollbacks are idempotent functions of the platform or the load, never the fault itself;
    # the data tier is judged once its zone is back (a second call finds nothing to judge).
    undo = {a["provider"]["func"] for a in experiment["rollbacks"]}
    assert undo <= {"restore_zone", "ensure_store_restored", "restore_event_stream",
                    "restore_data_tier", "stop_load", "data_tier_after_zone_fault"}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_hypothesis_probe_is_judged_by_the_catalogs_limit(name: str) -> None:
    for probe in _experiment(name)["steady-state-hypothesis"]["probes"]:
        assert probe["tolerance"]["provider"]["func"] == "within_limit", probe["name"]
        slo_id = probe["provider"].get("arguments", {}).get("slo_id")
        assert slo_id is None or slo_id in {s.id for s in CATALOG}


def test_the_steady_state_limit_is_the_error_budget_at_the_fastest_page_burn_rate() -> None:
    availability = steady.slo("api-availability")
    assert steady.page_factor(availability) == 14.4
    assert steady.limit_of(availability) == pytest.approx(0.0144)
    assert steady.limit_of(steady.slo("policy-decision-latency")) == pytest.approx(0.144)
    assert steady.within_limit({"within": True}) and not steady.within_limit({"within": False})


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_activity_takes_configuration_and_secrets(name: str) -> None:
    for activity in _activities(_experiment(name)):
        provider = activity["provider"]
        func = getattr(importlib.import_module(provider["module"]), provider["func"])
        params = inspect.signature(func).parameters
        assert {"configuration", "secrets"} <= set(params), activity["name"]


def test_a_deployment_that_needs_the_admin_token_gets_a_step_that_says_where_it_goes(
    mesh: MeshProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("MESH_URL", mesh.url)  # a deployment: no local cluster to read it from
    config = {"run_dir": str(tmp_path), "drill": "backup-restore"}
    with pytest.raises(ActivityFailed, match="GET /v1/audit/verify needs the admin token:"
                       " export MESH_ADMIN_TOKEN"):
        store.audit_chain_valid(configuration=config, secrets={"admin_token": ""})
    with pytest.raises(ActivityFailed, match="revoking credentials needs the admin token"):
        runstate.required_admin_token({"admin_token": ""}, "revoking credentials")
    assert store.audit_chain_valid(configuration=config,
                                   secrets={"admin_token": ADMIN_TOKEN})["ok"]


def test_the_az_failure_takes_its_fault_mode_as_a_setting() -> None:
    experiment = _experiment("az-failure")
    assert experiment["configuration"]["mode"] == {
        "type": "env", "key": "MESHSRE_CHAOS_MODE", "default": "power"}
    fail = next(a for a in experiment["method"] if a["name"] == "fail-zone")
    assert fail["provider"]["arguments"] == {"zone": "${zone}", "mode": "${mode}"}
