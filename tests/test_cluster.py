"""The local cluster end to end on SQLite: `meshsre up` with 3 zones x 2 replicas, HAProxy,
Prometheus, Alertmanager and the webhook; a zone failure under traffic; revocation propagation;
a backup-destroy-restore drill; and `down` leaving nothing behind. One cluster for the module.

Measurements are printed (run with -s to see them): up time, errors during the zone switch,
revocation p50/p99.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_api_client import PrometheusConnect
from prometheus_client.parser import text_string_to_metric_families

from mesh.local import procs
from mesh.local.cluster import proc_of
from mesh.local.platform import LocalPlatform
from mesh.local.state import StateDir
from mesh.local.webhook import read_alerts
from tests.clusterkit import Stream, describe, meshsre, percentile, register, revocation_delays

ZONES = ("a", "b", "c")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state_dir = tmp_path_factory.mktemp("cluster")
    started = time.monotonic()
    done = meshsre("up", "--state-dir", str(state_dir), "--base-port", "0")
    took = time.monotonic() - started
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        info = describe(state_dir)
        info.update(up_seconds=took, up_stdout=done.stdout, up_stderr=done.stderr,
                    started_at=time.time() - took, state_path=state_dir)
        print(f"\nMEASURED up: ready in {took:.2f}s (3 zones x 2 replicas, SQLite)")
        yield info
    finally:
        meshsre("down", "--state-dir", str(state_dir))


@pytest.fixture
def platform(cluster: dict[str, Any]) -> LocalPlatform:
    return LocalPlatform(StateDir(cluster["state_path"]))


@pytest.fixture
def front(cluster: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster["front_door"], timeout=5, trust_env=False) as client:
        yield client


def _admin(cluster: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {cluster['admin_token']}"}


def _replica_urls(cluster: dict[str, Any]) -> list[str]:
    return [c["url"] for c in cluster["components"] if c["kind"] == "mesh"]


def _server_states(cluster: dict[str, Any]) -> dict[str, str]:
    """HAProxy's view of each replica (UP, DOWN, ...) from its stats CSV."""
    raw = httpx.get(cluster["haproxy_stats"] + "/stats;csv", trust_env=False).text
    rows = csv.DictReader(io.StringIO(raw.lstrip("# ")))
    return {r["svname"]: r["status"] for r in rows
            if r["pxname"] == "mesh" and r["svname"] not in ("FRONTEND", "BACKEND")}


def _status(client: httpx.Client, path: str) -> int | None:
    try:
        return client.get(path).status_code
    except httpx.TransportError:
        return None


def _wait(predicate: Any, timeout: float, step: float = 0.05) -> float:
    """Seconds until predicate() holds; fails after timeout."""
    began = time.monotonic()
    while not predicate():
        assert time.monotonic() - began < timeout, f"still false after {timeout}s"
        time.sleep(step)
    return time.monotonic() - began


def test_up_is_ready_in_under_15_seconds_and_prints_one_table(cluster: dict[str, Any]) -> None:
    assert cluster["up_seconds"] < 15
    assert cluster["up_stdout"].splitlines()[0].split() == [
        "component", "zone", "address", "pid", "ready"]
    assert "front door:" in cluster["up_stdout"]
    kinds = sorted(c["kind"] for c in cluster["components"])
    assert kinds == ["alertmanager", "haproxy", *["mesh"] * 6, "nats", "prometheus", "webhook"]
    assert cluster["ready"] and all(c["ready"] and c["pid"] for c in cluster["components"])
    addresses = {c["address"].split(":")[0] for c in cluster["components"] if c["kind"] == "mesh"}
    assert len(addresses) == 6  # one loopback address per replica
    token_file = Path(cluster["admin_token_file"])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_running_up_again_says_it_is_already_up(cluster: dict[str, Any]) -> None:
    done = meshsre("up", "--state-dir", str(cluster["state_path"]), "--base-port", "0")
    assert done.returncode == 0
    assert "already up" in done.stderr
    assert "prometheus reloaded its rule files" in done.stderr  # picks up new alerts/build
    pids = {c["name"]: c["pid"] for c in describe(cluster["state_path"])["components"]}
    assert pids == {c["name"]: c["pid"] for c in cluster["components"]}


def test_requests_through_the_front_door_reach_replicas_in_every_zone(
    cluster: dict[str, Any], front: httpx.Client
) -> None:
    did = register(front)
    # `up` waits for each replica to answer ready; HAProxy, whose first checks may have run
    # before a replica listened, needs two good checks (`rise 2`) to route to it again.
    _wait(lambda: set(_server_states(cluster).values()) == {"UP"}, timeout=10)
    served = {front.get(f"/v1/agents/{did}").headers["x-served-by"] for _ in range(30)}
    assert served == {f"{z}-{i}" for z in ZONES for i in range(2)}
    # ... and each replica counted them in its own metrics.
    for url in _replica_urls(cluster):
        text = httpx.get(url + "/metrics", trust_env=False).text
        count = sum(
            s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "agentmesh_api_request_duration_seconds_count"
            and s.labels.get("route") == "/v1/agents/{did}" and s.labels.get("method") == "GET"
        )
        assert count >= 1, url


def test_prometheus_scrapes_every_target_with_zone_and_replica_labels(
    cluster: dict[str, Any],
) -> None:
    prom = PrometheusConnect(url=cluster["prometheus"], disable_ssl=True)

    def all_up() -> bool:
        series = prom.custom_query("up")
        return len(series) == 9 and all(s["value"][1] == "1" for s in series)

    _wait(all_up, timeout=15, step=0.5)
    mesh = {(s["metric"]["zone"], s["metric"]["replica"])
            for s in prom.custom_query('up{job="mesh"}')}
    assert mesh == {(z, f"{z}-{i}") for z in ZONES for i in range(2)}
    jobs = {s["metric"]["job"] for s in prom.custom_query("up")}
    assert jobs == {"mesh", "haproxy", "prometheus", "alertmanager"}
    # the mesh's own metrics arrive labelled too
    per_zone = prom.custom_query("count by (zone) (agentmesh_build_info)")
    assert sorted(s["metric"]["zone"] for s in per_zone) == list(ZONES)


def test_an_always_firing_alert_reaches_the_webhook_file_through_alertmanager(
    cluster: dict[str, Any],
) -> None:
    def arrived() -> list[dict[str, Any]]:
        return [a for a in read_alerts(cluster["alerts_file"])
                if a["name"] == "MeshsreLocalWatchdog" and a["status"] == "firing"]

    _wait(lambda: bool(arrived()), timeout=30, step=0.25)
    first = arrived()[0]
    assert first["labels"]["cluster"] == "local" and first["receiver"] == "meshsre-webhook"
    after = first["received_at"] - cluster["started_at"]
    print(f"\nMEASURED watchdog alert at the webhook {after:.1f}s after `up` began")


@pytest.mark.slow
def test_the_cluster_keeps_its_private_keys_in_0600_files_and_its_log_verifies_offline(
    cluster: dict[str, Any], front: httpx.Client, tmp_path: Path
) -> None:
    root = Path(cluster["state_path"])
    keys = [root / "issuer.key", root / "log.key"]
    assert [oct(k.stat().st_mode & 0o777) for k in keys] == ["0o600", "0o600"]
    register(front)
    kept = tmp_path / "checkpoint.json"
    done = meshsre("audit", "checkpoint", "--url", cluster["front_door"], "--token",
                   cluster["admin_token"], "--out", str(kept))
    assert done.returncode == 0, done.stderr
    done = meshsre("audit", "verify", "--state-dir", str(root), "--checkpoint", str(kept))
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr


def test_a_zone_failure_under_traffic_is_routed_around_within_3_seconds(
    cluster: dict[str, Any], platform: LocalPlatform, front: httpx.Client
) -> None:
    seed = register(front)
    stream = Stream(cluster["front_door"]).start(seed)
    try:
        time.sleep(1.5)
        failed = platform.fail_zone("a")
        assert sorted(failed["killed"]) == ["mesh-a-0", "mesh-a-1"]
        t_fail = failed["at"]
        _wait(lambda: {_server_states(cluster).get(s) for s in ("a-0", "a-1")} == {"DOWN"},
              timeout=5)
        t_down = time.time()
        detect = t_down - t_fail
        assert [r.ready for r in platform.replicas() if r.zone == "a"] == [False, False]
        time.sleep(2.0)
        t_restore = time.time()
        restored = platform.restore_zone("a", timeout=30)
        assert sorted(restored["started"]) == ["mesh-a-0", "mesh-a-1"]
        rejoin = _wait(lambda: {_server_states(cluster).get(s) for s in ("a-0", "a-1")}
                       == {"UP"}, timeout=10)
        t_up = time.time()
        time.sleep(1.5)
    finally:
        stream.stop()
    errors = stream.errors(since=t_fail)
    total = sum(1 for o in stream.outcomes if o.at >= t_fail)
    print(f"\nMEASURED zone a failure: HAProxy marked it down {detect:.2f}s after SIGKILL; "
          f"{errors} errors of {total} requests from the kill to the end; zone back in rotation "
          f"{rejoin:.2f}s after restore_zone returned")
    assert detect < 3.0
    failures = [o for o in stream.outcomes if o.status not in (200, 201)]
    assert errors <= max(2, total // 100), failures
    after_down = stream.served(since=t_down + 0.1, until=t_restore)
    assert not {s for s in after_down if s.startswith("a-")}
    assert {s[0] for s in after_down} == {"b", "c"}
    assert {"a-0", "a-1"} <= set(stream.served(since=t_up))
    # every acknowledged write survived the zone failure
    acked = [o.did for o in stream.outcomes if o.did]
    assert acked and all(front.get(f"/v1/agents/{d}").status_code == 200 for d in acked)


@pytest.mark.slow
def test_a_revocation_through_one_replica_is_enforced_by_every_other_within_a_second(
    cluster: dict[str, Any], front: httpx.Client
) -> None:
    did = register(front)
    delays = revocation_delays(_replica_urls(cluster), cluster["admin_token"], did, rounds=12)
    p50, p99 = percentile(delays, 50), percentile(delays, 99)
    print(f"\nMEASURED revocation propagation (SQLite, {len(delays)} samples): "
          f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms")
    assert len(delays) == 12 * 5
    assert p99 < 1.0


@pytest.mark.slow
def test_backup_destroy_restore_keeps_the_audit_chain_valid_and_every_record(
    cluster: dict[str, Any], platform: LocalPlatform, front: httpx.Client, tmp_path: Path
) -> None:
    dids = [register(front) for _ in range(10)]
    made = platform.backup(tmp_path / "mesh-backup.db")
    assert made["integrity"] == "ok" and made["tables"]["agents"] >= 10

    def last_backup() -> float:
        text = httpx.get(_replica_urls(cluster)[0] + "/metrics", trust_env=False).text
        return max((s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if s.name == "agentmesh_backup_last_success_timestamp_seconds"), default=0)

    # The runtime exposes the newest row of the backups table (cached for a few seconds).
    _wait(lambda: last_backup() >= int(made["finished_at"]), timeout=10, step=0.5)

    gone = platform.destroy_store()
    assert len(gone["killed"]) == 6 and not Path(cluster["storage"][10:]).exists()
    # With every replica gone the front door answers 503; a keep-alive connection it was
    # closing at that instant may drop one request first.
    _wait(lambda: _status(front, "/health/ready") == 503, timeout=5)
    back = platform.restore(tmp_path / "mesh-backup.db", timeout=30)
    assert back["tables"] == made["tables"] and back["audit_head"] == made["audit_head"]
    assert all(r.ready for r in platform.replicas())
    _wait(lambda: front.get("/health/ready").status_code == 200, timeout=10)

    audit = front.get("/v1/audit/verify", headers=_admin(cluster)).json()
    assert audit["ok"] and audit["length"] == made["tables"]["audit"]
    assert audit["head"] == made["audit_head"]
    assert all(front.get(f"/v1/agents/{d}").status_code == 200 for d in dids)
    register(front)  # a smoke write extends the restored chain
    assert front.get("/v1/audit/verify", headers=_admin(cluster)).json()["ok"]


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def test_down_under_load_returns_only_when_no_process_is_left_and_every_port_is_free(
    cluster: dict[str, Any], front: httpx.Client,
) -> None:
    state = StateDir(cluster["state_path"]).load()
    assert state is not None
    recorded = [proc_of(c) for c in state.components]
    # A replica in a zone namespace listens on an address that goes with its namespace.
    ports = [(c.host, c.port) for c in state.components if c.host.startswith("127.")]
    ports += [(c.host, c.aux_port) for c in state.components if c.aux_port]
    namespaces = [z["netns"] for z in (state.network or {}).get("zones", [])]
    stream = Stream(cluster["front_door"], rate_per_thread=50, threads=4).start(register(front))
    try:
        time.sleep(2)
        assert len(stream.outcomes) > 100 and stream.errors() == 0
        done = meshsre("down", "--state-dir", str(cluster["state_path"]))
    finally:
        stream.stop()
    assert done.returncode == 0, done.stderr
    assert not any(procs.alive(p) for p in recorded)
    assert procs.find_tagged(str(cluster["state_path"])) == []
    assert all(_bindable(h, p) for h, p in ports), ports
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [n for n in namespaces if n in left], left
    assert not StateDir(cluster["state_path"]).state_file.exists()
    assert meshsre("status", "--state-dir", str(cluster["state_path"])).returncode == 1
    assert os.path.exists(cluster["state_path"] / "logs")  # logs stay for the post-mortem
