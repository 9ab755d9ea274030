"""The three drills for real, as `meshsre chaos NAME` against a local cluster (3 zones x 1
replica, SQLite, HAProxy, Prometheus, Alertmanager, webhook) under a constant-rate Locust load;
then the same AZ failure behind a front door with its health checks and retries turned off,
which the hypothesis must catch. One cluster for the module; the broken case runs last.

Measurements are printed (run with -s to see them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.local import procs, zonenet
from mesh.local.cluster import Cluster, proc_of
from mesh.local.platform import LocalPlatform
from mesh.local.render import render_all
from mesh.local.state import StateDir
from tests.chaoskit import chaos
from tests.clusterkit import MESHSRE, meshsre

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("chaos-cluster")
    done = meshsre("up", "--state-dir", str(state), "--base-port", "0",
                   "--replicas-per-zone", "1")
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        yield state
    finally:
        meshsre("down", "--state-dir", str(state))


def _all_ready(state: Path) -> bool:
    return all(r.ready for r in LocalPlatform(StateDir(state)).replicas())


def test_az_failure_holds_the_hypothesis_loses_no_write_and_is_paged(
    cluster: Path, tmp_path: Path,
) -> None:
    done, rec = chaos(cluster, tmp_path, "az-failure", "observe_seconds=10",
                      "detect_timeout=100")
    m = rec["measurements"]
    print(f"\nMEASURED az-failure (zone {m['zone']}, 3x1 SQLite, 20 req/s): TTD"
          f" {m['ttd_seconds']} s ({m['ttd_alert']}), TTR {m['ttr_seconds']} s,"
          f" {m['errors_during_failure']} errors in {m['requests_during_failure']} requests"
          f" during {m['observed_seconds']} s, writes lost {m['writes_lost']} of"
          f" {m['writes_acknowledged']}, zone back in {m['zone_restore_seconds']} s")
    assert done.returncode == 0, "\n".join(rec["failures"]) + done.stderr[-2000:]
    assert rec["passed"] and rec["status"] == "completed" and not rec["deviated"]
    assert rec["hypothesis"]["before"]["met"] and rec["hypothesis"]["after"]["met"]
    assert m["writes_lost"] == 0 and m["writes_acknowledged"] > 0
    # MeshZoneDown holds for 1m before it fires: detection cannot be faster than that.
    assert 60 <= m["ttd_seconds"] < 100 and m["ttd_alert"] == "MeshZoneDown"
    assert m["designated_alerts"] == ["MeshZoneDown", "MeshZoneSlow"]  # what live recall counts
    assert m["ttr_seconds"] is not None and m["errors_during_failure"] is not None
    assert rec["fault"]["ended_at"] > rec["fault"]["started_at"]
    assert _all_ready(cluster)  # the rollback brought the zone back
    assert (tmp_path / "az-failure" / rec["files"]["load_record"]).exists()


@pytest.mark.skipif(zonenet.unavailable() is not None, reason="blackhole needs zone networks")
def test_a_blackholed_zone_costs_clients_what_the_front_doors_timeouts_allow(
    cluster: Path, tmp_path: Path,
) -> None:
    # A short detect timeout keeps the test short: detection is the drill above's job.
    done = subprocess.run([MESHSRE, "chaos", "az-failure", "--mode", "blackhole",
                           "--state-dir", str(cluster), "--out", str(tmp_path), "--run-id", "bh",
                           "--var", "observe_seconds=15", "--var", "detect_timeout=3"],
                          capture_output=True, text=True, timeout=300)
    rec = json.loads((tmp_path / "bh" / "chaos-az-failure-blackhole.json").read_text())
    m = rec["measurements"]
    print(f"\nMEASURED az-failure blackhole (3x1 SQLite): TTR {m['ttr_seconds']} s by errors,"
          f" {m['ttr_latency_seconds']} s by latency (bound {m['expected_ttr_seconds']} s),"
          f" p99 {m['p99_corrected_before_ms']} ms before, worst second"
          f" {m['p99_corrected_worst_second_ms']} ms, errors {m['errors_by_kind']}")
    assert m["mode"] == "blackhole" and m["network"] == "zones"
    # Connections to the zone hang instead of being refused: clients wait for timeouts...
    assert m["ttr_latency_seconds"] is not None and m["ttr_latency_seconds"] > 0
    assert m["p99_corrected_worst_second_ms"] >= 1000 * m["front_door"]["timeout_connect"]
    # ...and no longer than the front door's settings allow (a second's rounding, a busy CPU).
    assert m["ttr_latency_seconds"] <= m["expected_ttr_seconds"] + 2, m["expected_ttr_explained"]
    assert m["writes_lost"] == 0
    assert [f for f in rec["failures"] if "time-to-detect" not in f] == [], rec["failures"]
    assert done.returncode == 1  # only because no page can come within 3 s
    assert _all_ready(cluster)  # the rollback lifted the blackhole


def test_revocation_under_load_reaches_every_replica_with_p99_recorded(
    cluster: Path, tmp_path: Path,
) -> None:
    done, rec = chaos(cluster, tmp_path, "revocation", "rounds=10")
    m = rec["measurements"]
    print(f"\nMEASURED revocation (3x1 SQLite, under load): {m['samples']} samples, p50"
          f" {m['p50_seconds']} s, p99 {m['p99_seconds']} s, max {m['max_seconds']} s;"
          f" server-side p99 {m['server_p99_seconds']} s")
    assert done.returncode == 0, "\n".join(rec["failures"]) + done.stderr[-2000:]
    assert m["samples"] == 10 * 2 and m["unpropagated"] == 0
    assert m["p50_seconds"] <= m["p99_seconds"] <= 5.0
    assert rec["objectives"]["revocation-p99"]["met"]


def test_plain_chaos_run_finds_the_local_cluster_with_no_environment_set(
    cluster: Path, tmp_path: Path,
) -> None:
    # As a user runs it from a checkout: `chaos run chaos/revocation.json`, .meshsre in the
    # working directory, and nothing exported: no MESH_URL, PROMETHEUS_URL or admin token.
    (tmp_path / ".meshsre").symlink_to(cluster)
    experiment = Path(__file__).parents[1] / "chaos" / "revocation.json"
    done = subprocess.run(
        [str(Path(MESHSRE).with_name("chaos")), "--no-version-check", "run",
         "--rollback-strategy", "always", "--var", "rounds=3",
         str(experiment)],
        cwd=tmp_path, env={"PATH": os.environ["PATH"]}, capture_output=True, text=True,
        timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (record,) = (tmp_path / "reports" / "out").glob("*-chaos/chaos-revocation.json")
    rec = json.loads(record.read_text())
    assert rec["passed"], rec["failures"]
    assert rec["measurements"]["samples"] == 3 * 2 and rec["measurements"]["unpropagated"] == 0


def test_backup_restore_on_sqlite_keeps_the_chain_and_measures_rto_and_rpo(
    cluster: Path, tmp_path: Path,
) -> None:
    done, rec = chaos(cluster, tmp_path, "backup-restore", "write_seconds=3")
    m = rec["measurements"]
    print(f"\nMEASURED backup-restore (SQLite, under load): RTO {m['rto_seconds']} s"
          f" {m['rto_phases']}, RPO {m['rpo_seconds']} s, {m['writes_lost']} acknowledged"
          f" writes lost (all after the backup: {m['writes_lost_before_backup'] == 0}),"
          f" backup {m['backup']['size_bytes']} bytes")
    assert done.returncode == 0, "\n".join(rec["failures"]) + done.stderr[-2000:]
    assert m["backend"] == "sqlite" and m["backup"]["integrity"] == "ok"
    assert m["chain_ok"] and m["manifest_match"] and m["smoke_write"]
    assert m["writes_lost_before_backup"] == 0
    assert set(m["rto_phases"]) == {"restore", "replicas_ready", "serving"}
    assert 0 < m["rto_seconds"] <= 120 and m["rpo_seconds"] >= 3
    assert _all_ready(cluster)


def _restart_front_door(state: Path, naive: bool) -> None:
    """Re-render HAProxy's config (optionally without health checks, retries and redispatch)
    and restart it in place."""
    paths = StateDir(state)
    cluster = Cluster(paths)
    with paths.locked():
        current = cluster.load()
        render_all(current, paths)
        config = paths.config / "haproxy.cfg"
        text = config.read_text()
        if naive:
            text, checks = re.subn(r"^(\s+server \S+ \S+) check$", r"\1", text, flags=re.M)
            # The writes backend's servers follow those checks: nothing to follow any more.
            text, tracks = re.subn(r"^(\s+server \S+ \S+) track \S+$", r"\1", text,
                                   flags=re.M)
            assert checks == tracks == 3
            text = text.replace("    retries 2\n", "    retries 0\n")
            text = text.replace("    option redispatch 1\n", "")
            config.write_text(text)
        haproxy = current.component("haproxy")
        assert haproxy is not None
        procs.kill(proc_of(haproxy))
        cluster.start(current, [haproxy], timeout=15)


def test_a_front_door_without_health_checks_makes_the_hypothesis_deviate(
    cluster: Path, tmp_path: Path,
) -> None:
    # Health checks alone are not enough to break it: HAProxy retries a refused connection on
    # another server (redispatch). The naive front door has neither.
    _restart_front_door(cluster, naive=True)
    try:
        done, rec = chaos(cluster, tmp_path, "az-failure", "observe_seconds=8",
                          "detect_timeout=2")
    finally:
        _restart_front_door(cluster, naive=False)
    m = rec["measurements"]
    print(f"\nMEASURED az-failure behind a naive front door: {m['errors_during_failure']}"
          f" errors in {m['requests_during_failure']} requests (ratio"
          f" {m['error_ratio_during_failure']}); failures: {rec['failures'][:2]}")
    assert done.returncode == 1
    assert rec["deviated"] and not rec["passed"]
    assert rec["hypothesis"]["before"]["met"] and not rec["hypothesis"]["after"]["met"]
    assert rec["failures"][0] == ("steady-state hypothesis deviated after the method:"
                                  " clients-over-their-last-30-seconds")
    assert m["error_ratio_during_failure"] > 0.1  # a third of the servers refuse
    assert "az-failure: FAILED (status completed, deviated true)" in done.stderr
    deadline = time.monotonic() + 15
    while not _all_ready(cluster) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _all_ready(cluster)
