"""`meshsre nightly` end to end with NIGHTLY_QUICK=1 on a fresh local cluster on the Patroni
tier (the AZ failure in the blackhole mode, and the data fault): every stage runs, the report
exists, no chart is empty, its verdicts are the records', and nothing is left running."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mesh.local import datatier, procs
from mesh.local.state import StateDir
from tests.clusterkit import MESHSRE

# The quick night fails a zone in one mode, blackhole, and the data tier's primary (a full
# night runs every mode).
STAGES = ["up", "steady-load", "governance", "az-failure-blackhole", "backup-restore",
          "revocation", "event-stream", "data-failover", "security", "report", "down"]


def _nightly(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # pytest's tmp_path is 0700: as root, the Patroni tier keeps its members elsewhere.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MESH", "NIGHTLY_"))}
    return subprocess.run([MESHSRE, "nightly", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=600,
                          env={**clean, "NIGHTLY_STATE_DIR": str(tmp_path / "state"), **env})


def _json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.slow
def test_a_quick_nightly_runs_every_stage_and_reports_what_its_records_say(
        tmp_path: Path) -> None:
    try:
        done = _nightly(tmp_path, NIGHTLY_QUICK="1", NIGHTLY_RUN_ID="ci-nightly")
    finally:  # the data tier's members, kept outside the 0700 tmp_path (the job keeps data)
        shutil.rmtree(datatier.spare_dir(StateDir(tmp_path / "state")), ignore_errors=True)
    print(done.stdout[-6000:])
    run = tmp_path / "out" / "ci-nightly"
    manifest = _json(run / "run.json")
    assert [s["name"] for s in manifest["stages"]] == STAGES, done.stdout + done.stderr
    assert all(s["status"] in ("ok", "failed") for s in manifest["stages"]), manifest["stages"]
    assert procs.find_tagged(str((tmp_path / "state").resolve())) == []  # down ran
    # Progress: each stage, the clock, and live figures while it ran.
    for stage in STAGES:
        assert re.search(rf"^\[nightly \d+:\d\d {stage}\] start: ", done.stdout, re.M), stage
    assert re.search(r"^\[nightly \d+:\d\d az-failure-blackhole\] [\d.]+ req/s, 5xx ",
                     done.stdout, re.M)
    # The report exists, with every chart drawn.
    report = _json(run / "slo-report.json")
    html = (run / "slo-report.html").read_text()
    # 8, and the clients' latency and errors across each fault (the zone's, the data tier's).
    assert html.count("<svg") == 10 and 'data-empty="true"' not in html
    assert (run / "slo-report.md").read_text().startswith("<!-- Generated")
    assert [e["run_id"] for e in report["trend"]] == ["ci-nightly"]
    assert (tmp_path / "out" / "history.jsonl").read_text().count("\n") == 1
    # Its verdicts are the records' verdicts.
    chaos = {p.stem.removeprefix("chaos-"): _json(p) for p in run.glob("chaos-*.json")}
    assert set(chaos) == {"az-failure-blackhole", "backup-restore", "revocation",
                          "event-stream", "data-failover"}
    judged = {e["name"]: e["passed"] for e in report["chaos"] + report["drills"]}
    assert judged == {name: rec["passed"] for name, rec in chaos.items()}
    for row in report["slos"]:
        views = [v["good_ratio"] >= row["objective"] / 100
                 for v in (row["client"], row["server"]) if v is not None]
        assert row["verdict"] == ("met" if all(views) else "breached"), row
    assert report["prometheus"]["available"]
    # Governance: the overhead, and revocation to enforcement on every sidecar (one a zone),
    # with the stream, under the revocation drill, and without the stream.
    (job,) = report["governance"]["jobs"]
    assert job["overhead"]["p99_overhead_ms"] is not None and job["overhead"]["p99_ratio"]
    assert len(job["sidecars"]) == 3
    assert all(s["revocations"]["samples"] and not s["revocations"]["unenforced"]
               for s in job["sidecars"]), job["sidecars"]
    phases = {d["drill"]: {p["phase"]: p for p in d["phases"]}
              for d in report["governance"]["drills"]}
    assert chaos["event-stream"]["passed"], chaos["event-stream"]["failures"]
    assert phases["event-stream"]["without the stream"]["channels"] == ["fallback"]
    assert phases["revocation"]["under load"]["unenforced"] == 0
    assert "Revocation to enforcement on every sidecar" in html
    # Live alert quality: the zone drill is caught by its page, and precision is reported.
    live = report["alert_quality"]["live"]
    caught = {d["drill"]: d for d in live["drills"]}
    assert set(caught) == {"az-failure-blackhole", "data-failover"}, live["drills"]
    zone_drill = caught["az-failure-blackhole"]
    assert zone_drill["caught_by"] in ("MeshZoneDown", "MeshZoneSlow")  # whichever came first
    assert zone_drill["ttd_s"] == chaos["az-failure-blackhole"]["measurements"]["ttd_seconds"]
    assert re.search(r"alerts: live precision ([\d.]+|no page) \(\d+ pages?, ", done.stdout)
    assert re.search(r"alerts: az-failure-blackhole caught by MeshZone(Down|Slow) in [\d.]+ s",
                     done.stdout)
    # The security suite's checks, as a record the report shows: each attack refused.
    security = _json(run / "checks-security.json")
    assert [(c["name"], c["passed"]) for c in report["checks"]] == [("security", True)], \
        security["checks"]
    assert security["figures"]["slow_bodies.slow_connections_held"] == "300"
    # The audit log, tampered with in copies of the store, and its checkpoint kept: in the
    # run directory and the run record, and as the latest for the next run to extend.
    assert "rewritten" in security["figures"]["audit_tamper.detected"]
    kept = manifest["audit_checkpoint"]
    assert kept["file"] == "audit-checkpoint.json" and kept["size"] > 0
    assert _json(run / kept["file"]) == _json(tmp_path / "out" / "audit-checkpoint.json")
    assert "Checks against the deployment" in html and "slow body clients" in html
    # The exit status follows the verdict (NIGHTLY_FAIL_ON defaults to slo,drill,alerts,check).
    failed = any(b["kind"] in ("slo", "drill", "alerts", "check")
                 for b in report["verdict"]["breaches"])
    assert done.returncode == (1 if failed else 0), done.stdout[-3000:] + done.stderr
    # The data fault: a standby promoted, no acknowledged write lost (synchronous), and its
    # clients in the report's row and charts.
    data = chaos["data-failover"]["measurements"]
    assert data["new_primary"] != data["failed_primary"] and data["writes_lost"] == 0, data
    assert data["client_timeline"] and data["errors_by_kind"] is not None, data
    (row,) = [d["failover"] for d in report["drills"] if d["failover"]]
    assert row["failover_seconds"] == data["failover_seconds"]
    az = chaos["az-failure-blackhole"]["measurements"]
    # A blackholed zone costs the clients at most what the front door's timeouts allow.
    assert az["ttr_latency_seconds"] is not None
    assert az["ttr_latency_seconds"] <= az["expected_ttr_seconds"] + 2, az
    print(f"\nMEASURED nightly: blackhole TTD {az['ttd_seconds']} s ({az['ttd_alert']}), TTR"
          f" {az['ttr_seconds']} s by errors, {az['ttr_latency_seconds']} s by latency"
          f" (bound {az['expected_ttr_seconds']} s), errors {az['errors_by_kind']},"
          f" RTO {chaos['backup-restore']['measurements']['rto_seconds']} s,"
          f" data failover {data['failover_seconds']} s (TTD {data['ttd_seconds']} s,"
          f" {data['ttd_alert']}), errors {data['errors_by_kind']},"
          f" revocation p99 {chaos['revocation']['measurements']['p99_seconds']} s,"
          f" governance overhead p99 {job['overhead']['p99_overhead_ms']} ms (ratio"
          f" {job['overhead']['p99_ratio']}), sidecars without the stream p99"
          f" {phases['event-stream']['without the stream']['p99_s']} s,"
          f" wall {manifest['ended_at'] - manifest['started_at']:.0f} s")


def test_against_kubernetes_it_needs_the_mesh_and_prometheus_urls(tmp_path: Path) -> None:
    done = _nightly(tmp_path, MESH_PLATFORM="kubernetes", MESH_URL="http://127.0.0.1:1")
    assert done.returncode == 2
    assert done.stdout.strip() == ("nightly: MESH_PLATFORM=kubernetes needs PROMETHEUS_URL"
                                   " (the job does not start or stop a remote mesh)")
    assert not (tmp_path / "state").exists()  # nothing was started


def test_a_cluster_that_cannot_start_ends_the_job_with_status_2_and_nothing_running(
        tmp_path: Path) -> None:
    done = _nightly(tmp_path, NIGHTLY_QUICK="1", NIGHTLY_RUN_ID="broken",
                    NIGHTLY_ZONES="a,a")
    assert done.returncode == 2, done.stdout
    stages = _json(tmp_path / "out" / "broken" / "run.json")["stages"]
    assert [(s["name"], s["status"]) for s in stages] == [("up", "error"), ("down", "ok")]
    assert "meshsre up exited 1" in done.stdout
    assert procs.find_tagged(str((tmp_path / "state").resolve())) == []
