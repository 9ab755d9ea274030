"""Judging a drill and writing its run record, on journals and load histories recorded from real
runs against a local cluster (tests/testdata/chaos), and the runner around `chaos run`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from chaos import load, record, runstate, zone
from chaos.runner import ChaosRun, run, zone_drill
from mesh.local.webhook import lines_for

DATA = Path(__file__).parent / "testdata" / "chaos"
MESHSRE = str(Path(sys.executable).with_name("meshsre"))


def _recorded(kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    journal = json.loads((DATA / f"journal-az-failure-{kind}.json").read_text())
    notes = json.loads((DATA / f"notes-az-failure-{kind}.json").read_text())
    return journal, notes


def test_a_drill_that_held_its_hypothesis_and_objectives_passes(tmp_path: Path) -> None:
    journal, notes = _recorded("passed")
    rec = record.build(journal, notes)
    assert rec["passed"] and rec["failures"] == []
    assert rec["hypothesis"]["before"]["met"] and rec["hypothesis"]["after"]["met"]
    assert rec["measurements"]["writes_lost"] == 0
    assert rec["measurements"]["ttd_alert"] == "MeshZoneDown"
    assert rec["fault"]["duration_s"] == pytest.approx(
        rec["fault"]["ended_at"] - rec["fault"]["started_at"], abs=0.01)
    assert [m["name"] for m in rec["method"]][:2] == ["constant-rate-load-is-running",
                                                       "fail-zone"]
    path = record.write(tmp_path, rec)
    assert path.name == "chaos-az-failure.json"
    assert record.read(path) == json.loads(json.dumps(rec))


def test_a_broken_front_door_is_reported_as_a_deviation_and_each_failed_activity() -> None:
    journal, notes = _recorded("broken")
    rec = record.build(journal, notes)
    assert not rec["passed"] and rec["deviated"]
    failures = rec["failures"]
    assert failures[0] == ("steady-state hypothesis deviated after the method:"
                           " clients-over-their-last-30-seconds")
    failed = [f.split(":")[0] for f in failures if f.startswith("method activity")]
    assert failed == ["method activity clients-during-the-failure failed",
                      "method activity time-to-detect failed",
                      "method activity no-acknowledged-write-lost failed"]
    assert "ratio 0.3350 > limit 0.0144" in failures[1]
    assert "chaoslib.exceptions" not in failures[1]  # the wrapper's name is noise
    assert "objective client-errors-during-failure missed" in " ".join(failures)


def test_a_run_that_never_got_past_its_hypothesis_says_so() -> None:
    journal, _ = _recorded("passed")
    journal["steady_states"]["before"]["steady_state_met"] = False
    journal["steady_states"]["before"]["probes"][2]["tolerance_met"] = False
    journal.update(status="failed", run=[], rollbacks=[], steady_states={
        "before": journal["steady_states"]["before"], "after": None, "during": []})
    assert record.failures(journal, {}) == [
        "steady-state hypothesis not met before the method: clients-over-their-last-30-seconds"]


def test_a_record_of_another_schema_or_missing_fields_is_refused(tmp_path: Path) -> None:
    rec = record.build(*_recorded("passed"))
    path = record.write(tmp_path, {**rec, "schema_version": 2})
    with pytest.raises(record.RecordError, match=r"expected meshsre\.chaos/v1 v1"):
        record.read(path)
    path.write_text(json.dumps({k: v for k, v in rec.items() if k != "measurements"}))
    with pytest.raises(record.RecordError, match="missing fields measurements"):
        record.read(path)


def test_the_client_view_covers_the_last_window_and_skips_a_half_flushed_line(
    tmp_path: Path,
) -> None:
    (tmp_path / load.HISTORY).write_text((DATA / "stats-history-broken.csv").read_text()
                                         + "1795483211,10,,Aggregated,20.0")
    rows = load.history(tmp_path)
    assert len(rows) == 26 and rows[-1].t == 1795483210
    view = load.client_view(rows, 10)
    assert (view.seconds, view.requests, view.failures) == (10, 200, 66)
    before = load.client_view(rows, 5, until=1795483195)
    assert before.failures == 0 and before.requests == 100


def test_time_to_recover_ends_with_the_last_second_above_the_limit() -> None:
    rows = [load.Row(100 + i, 20 * i, f) for i, f in enumerate([0, 0, 5, 9, 9, 9, 9, 9, 9, 9])]
    bad, ttr, recovered = zone.recovery(rows, fault_at=101.5, end=109, limit=0.0144, settle=5)
    assert bad == [102, 103] and ttr == 1.5 and recovered
    bad, ttr, recovered = zone.recovery(rows, fault_at=101.5, end=106, limit=0.0144, settle=5)
    assert ttr is None and not recovered  # second 103 is within the last 5 s of 106
    assert zone.recovery(rows[:2], 100.5, 101, 0.0144, 5) == ([], 0.0, True)


def _configuration(tmp_path: Path, alerts: Path) -> dict[str, Any]:
    return {"run_dir": str(tmp_path), "drill": "az-failure", "alerts_file": str(alerts),
            "zone": "a"}


def _notify(path: Path, name: str, status: str, zone_label: str, at: float) -> None:
    notification = {"receiver": "meshsre-webhook", "status": status, "alerts": [
        {"status": status, "labels": {"alertname": name, "zone": zone_label, "severity": "page"},
         "annotations": {}, "startsAt": "2026-11-24T01:19:00Z", "fingerprint": "f00"}]}
    with path.open("a") as fh:
        for line in lines_for(notification, at):
            fh.write(json.dumps(line) + "\n")


def test_time_to_detect_is_the_first_firing_notification_for_the_zone_after_the_fault(
    tmp_path: Path,
) -> None:
    alerts = tmp_path / "alerts.jsonl"
    configuration = _configuration(tmp_path, alerts)
    fault_at = time.time() - 70
    runstate.notes(configuration).reset({"fault": {"started_at": fault_at}})
    _notify(alerts, "MeshZoneDown", "firing", "a", fault_at - 30)  # an earlier failure
    _notify(alerts, "MeshZoneDown", "firing", "b", fault_at + 61)  # another zone
    _notify(alerts, "MeshZoneDown", "resolved", "a", fault_at + 62)
    _notify(alerts, "MeshReplicaDown", "firing", "a", fault_at + 63)  # not the one asked for
    _notify(alerts, "MeshZoneDown", "firing", "a", fault_at + 64.5)
    found = zone.time_to_detect(["MeshZoneDown"], timeout=120, configuration=configuration)
    assert found["ttd_seconds"] == 64.5 and found["source"] == "webhook"
    notes = runstate.notes(configuration).read()
    assert notes["measurements"]["ttd_seconds"] == 64.5
    assert notes["objectives"]["time-to-detect"]["met"] is True


def test_time_to_detect_fails_and_records_the_miss_after_its_timeout(tmp_path: Path) -> None:
    configuration = _configuration(tmp_path, tmp_path / "alerts.jsonl")
    runstate.notes(configuration).reset({"fault": {"started_at": time.time() - 1.0}})
    with pytest.raises(ActivityFailed, match=r"no MeshZoneDown notification within 1\.5 s"):
        zone.time_to_detect(["MeshZoneDown"], timeout=1.5, configuration=configuration)
    assert runstate.notes(configuration).get("objectives")["time-to-detect"]["met"] is False


def test_the_runner_fails_a_run_that_chaos_run_itself_calls_completed(tmp_path: Path) -> None:
    experiment = {
        "title": "an action fails", "description": "chaos run exits 0 all the same",
        "configuration": {"drill": "unit"},
        "controls": [{"name": "meshsre-clock", "provider": {
            "type": "python", "module": "chaos.control",
            "arguments": {"faults": ["unknown-slo"], "recoveries": []}}}],
        "method": [{"type": "action", "name": "unknown-slo", "provider": {
            "type": "python", "module": "chaos.steady", "func": "slo",
            "arguments": {"slo_id": "no-such-slo"}}}],
        "rollbacks": []}
    path = tmp_path / "unit.json"
    path.write_text(json.dumps(experiment))
    result = run(ChaosRun(name=str(path), run_dir=tmp_path / "out"), echo=lambda _: None)
    assert result.chaos_exit_code == 0 and result.exit_code == 1
    rec = result.record
    assert rec["drill"] == "unit" and rec["status"] == "completed" and not rec["passed"]
    assert rec["failures"] == ["method activity unknown-slo failed: no SLO 'no-such-slo' in the"
                               " catalog: api-availability, registration-availability,"
                               " handshake-success, policy-decision-latency,"
                               " revocation-propagation"]
    assert rec["fault"]["activity"] == "unknown-slo" and rec["fault"]["ended_at"] is None
    assert [e["event"] for e in rec["timeline"]] == [
        "method-start", "activity-start", "activity-end", "method-end", "rollback-start",
        "rollback-end"]
    assert (tmp_path / "out" / "journal-unit.json").exists()
    assert record.read(result.record_path)["runner"]["exit_code"] == 1


def test_meshsre_chaos_refuses_an_unknown_experiment_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run([MESHSRE, "chaos", "nope", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "MESH_URL": "http://127.0.0.1:9"})
    assert done.returncode == 2
    assert done.stderr.strip() == ("chaos: unknown experiment 'nope': choose one of az-failure,"
                                   " backup-restore, revocation, event-stream, data-failover or"
                                   " give the path of an experiment file")


@pytest.mark.parametrize(("name", "mode", "says"), [
    ("az-failure", "loss:lots", "loss:N with N a whole percent from 1 to 100"),
    ("az-failure", "flood", "unknown fault mode 'flood': use one of power, blackhole"),
    ("revocation", "blackhole", "only az-failure has fault modes, not revocation")])
def test_meshsre_chaos_refuses_a_bad_mode_before_running_anything(
        tmp_path: Path, name: str, mode: str, says: str) -> None:
    done = subprocess.run([MESHSRE, "chaos", name, "--mode", mode, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "MESH_URL": "http://127.0.0.1:9"})
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_each_mode_names_its_own_record() -> None:
    assert [zone_drill(m) for m in ("power", "blackhole", "loss:20", "partition")] == [
        "az-failure", "az-failure-blackhole", "az-failure-loss-20", "az-failure-partition"]


def test_the_data_mode_runs_the_data_failover_experiment() -> None:
    from chaos.cli import _mode

    assert _mode("az-failure", "data") == ("data-failover", {})
    assert _mode("az-failure", "loss:20") == (
        "az-failure", {"mode": "loss:20", "drill": "az-failure-loss-20"})
