"""The load test end to end: Locust started as a subprocess against real mesh processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from loadtests import record
from loadtests.ledger import missing
from loadtests.sli import host_target
from loadtests.thresholds import derive
from mesh.process import ADMIN_TOKEN, MeshProcess, free_port
from tests.tcpproxy import TcpProxy

REPO = Path(__file__).resolve().parents[1]
WORKLOAD_ROUTES = {
    "POST /v1/agents", "GET /v1/agents/{did}", "POST /v1/handshakes/challenge",
    "POST /v1/handshakes/verify", "POST /v1/policy/decide", "POST /v1/credentials",
    "POST /v1/credentials/verify", "POST /v1/credentials/{jti}/revoke", "GET /v1/audit",
    "GET /health/live",
}
Run = tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]


def loadtest(*args: str, token: str | None = ADMIN_TOKEN,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MESH_ADMIN_TOKEN"}
    if token:
        env["MESH_ADMIN_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "loadtests", "--quiet", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MeshProcess, ...]]:
    """Two replicas sharing one SQLite store: revocations travel by polling between them."""
    db = tmp_path_factory.mktemp("mesh") / "mesh.db"
    with MeshProcess(f"sqlite:///{db}", replica="0") as a, \
            MeshProcess(f"sqlite:///{db}", zone="b", replica="0") as b:
        yield a, b


@pytest.fixture(scope="module")
def ci_run(replicas: tuple[MeshProcess, ...],
           tmp_path_factory: pytest.TempPathFactory) -> Run:
    a, b = replicas
    out = tmp_path_factory.mktemp("runs")
    done = loadtest("--host", a.url, "--replicas", f"{a.url},{b.url}", "--users", "8",
                    "--rate", "30", "--duration", "16s", "--revocation-every", "3",
                    "--run-id", "ci", "--out", str(out))
    assert (out / "ci" / "load.json").exists(), done.stderr[-3000:]
    return done, record.read(out / "ci" / "load.json"), out / "ci"


@pytest.mark.slow
def test_a_short_run_against_a_real_mesh_passes_and_its_record_has_every_field_filled(
    ci_run: Run,
) -> None:
    done, rec, run_dir = ci_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert rec["verdict"] == {"passed": True, "breached": [], "valid": True,
                              "invalid_reasons": [], "warnings": [], "exit_code": 0}
    totals = rec["totals"]
    assert set(totals["routes"]) == WORKLOAD_ROUTES  # one row per route template, not per DID
    assert all(r["requests"] > 0 for r in totals["routes"].values())
    # The workload itself is correct: no denial, no rejected credential, no 4xx.
    assert totals["failures"] == 0 and totals["server_errors"] == 0 and totals["dropped"] == 0
    assert totals["offered"] == pytest.approx(totals["requests"], rel=0.05)
    assert totals["requests"] == pytest.approx(30 * 16, rel=0.2)
    assert {t["id"] for t in rec["thresholds"]} == {t.id for t in derive()}
    basis = {t["id"]: t["basis"] for t in rec["thresholds"]}
    assert basis["policy-decision-latency"] == "server"  # both replicas scraped
    assert all(t["passed"] for t in rec["thresholds"])
    assert len(rec["series"]) >= 15
    busy = rec["series"][5]
    assert busy["target_rate"] == 30 and busy["requests"] > 0 and busy["offered"] > 0
    assert {"p50_ms", "p95_ms", "p99_ms", "p99_corrected_ms"} <= set(
        busy["routes"]["POST /v1/policy/decide"])
    assert rec["generator"]["cpu_seconds"] > 0 and not rec["generator"]["saturated"]
    assert rec["parameters"]["shape"] == "steady" and rec["parameters"]["rate"] == 30
    assert rec["runner"]["exit_code"] == 0
    for name in ("stats_csv", "history_csv", "html", "json"):  # Locust's own, beside it
        assert (run_dir / rec["files"][name]).stat().st_size > 0


@pytest.mark.slow
def test_every_acknowledged_registration_exists_in_every_replica_afterwards(
    ci_run: Run,
    replicas: tuple[MeshProcess, ...],
) -> None:
    _, rec, _ = ci_run
    dids = [e["did"] for e in rec["ledger"]["entries"]]
    assert rec["ledger"]["count"] == len(dids) > 8 * 2  # setup agents, new ones, the probe's
    assert len(set(dids)) == len(dids)
    for replica in replicas:
        assert missing(replica.url, dids) == []


@pytest.mark.slow
def test_the_revocation_probe_measures_propagation_to_the_other_replica(
    ci_run: Run,
    replicas: tuple[MeshProcess, ...],
) -> None:
    _, rec, _ = ci_run
    checks = rec["revocation"]["checks"]
    assert len(checks) >= 3 and not rec["revocation"]["errors"]
    a, b = (r.url for r in replicas)
    assert {(c["issued_via"], c["replica"]) for c in checks} == {(a, b), (b, a)}
    # Both replicas poll the shared store every 0.1 s: the delay is real and bounded.
    assert all(c["seconds"] is not None and 0 < c["seconds"] < 1.0 for c in checks)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_mesh_whose_store_is_unreachable_fails_the_run_and_the_breached_thresholds_are_named(
    pg_url: str, tmp_path: Path,
) -> None:
    parts = urlsplit(pg_url)
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        storage = proxy.url("postgresql", parts.path + "?user=postgres")
        with MeshProcess(storage) as mesh:
            proxy.cut("refuse")
            done = loadtest("--host", mesh.url, "--users", "4", "--rate", "20",
                            "--duration", "6s", "--run-id", "down", "--out", str(tmp_path))
    assert done.returncode == 1, done.stderr[-3000:]
    assert "FAILED: breached api-availability, registration-availability" in done.stderr
    rec = record.read(tmp_path / "down" / "load.json")
    assert {"api-availability", "registration-availability"} <= set(rec["verdict"]["breached"])
    assert rec["verdict"]["valid"] and rec["totals"]["server_errors"] > 0
    assert rec["ledger"]["count"] == 0  # nothing was acknowledged, nothing is promised


@pytest.mark.slow
def test_a_bare_host_is_judged_on_its_own_metrics_and_one_healthy_mesh_passes_at_50_per_second(
    tmp_path: Path,
) -> None:
    with MeshProcess(f"sqlite:///{tmp_path / 'mesh.db'}") as mesh:
        done = loadtest("--host", mesh.url, "--users", "10", "--rate", "50", "--duration",
                        "20s", "--run-id", "bare", "--out", str(tmp_path))
    rec = record.read(tmp_path / "bare" / "load.json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert rec["parameters"]["sli_basis"] == "server"
    assert rec["parameters"]["sli_replicas"] == [mesh.url]
    (latency,) = [t for t in rec["thresholds"] if t["id"] == "policy-decision-latency"]
    assert latency["basis"] == "server" and latency["passed"]
    assert "the client's own overhead (GET /health/live" in latency["detail"]


def test_a_host_that_answers_from_several_processes_is_not_read_as_one(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'mesh.db'}"
    with MeshProcess(db) as a, MeshProcess(db, zone="b") as b, \
            TcpProxy("127.0.0.1", a.port) as proxy:
        assert host_target(a.url) == ([a.url], "")
        proxy.round_robin(("127.0.0.1", a.port), ("127.0.0.1", b.port))
        url = f"http://127.0.0.1:{proxy.port}"
        targets, why = host_target(url)
    assert targets == [] and "answered from 2 processes (a load balancer)" in why
    assert "--replicas" in why


def test_an_unreachable_host_fails_in_one_line_within_five_seconds(tmp_path: Path) -> None:
    started = time.monotonic()
    done = loadtest("--host", f"http://127.0.0.1:{free_port()}", "--out", str(tmp_path))
    assert time.monotonic() - started < 5
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "cannot reach http://127.0.0.1:" in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--shape", "wavy"], "Invalid value for '--shape'"),
    (["--rate", "0"], "Invalid value for '--rate'"),
    (["--users", "-2"], "Invalid value for '--users'"),
    (["--duration", "ten"], "bad duration 'ten'"),
])
def test_bad_input_is_a_usage_error_that_says_what_is_wrong(
    args: list[str], message: str, tmp_path: Path
) -> None:
    done = loadtest("--host", "http://127.0.0.1:1", *args, "--out", str(tmp_path))
    assert done.returncode == 2 and message in done.stderr


def test_without_a_host_and_without_a_local_cluster_the_error_says_how_to_get_one(
    tmp_path: Path,
) -> None:
    done = loadtest("--state-dir", str(tmp_path / "no-cluster"), "--out", str(tmp_path))
    assert done.returncode == 2
    assert "no local cluster is up" in done.stderr and "meshsre up" in done.stderr
