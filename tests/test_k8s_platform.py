"""The Kubernetes platform adapter against API objects in the API server's wire format, served
over HTTP by a hand-written fake (tests/k8sfake.py), through the official client. The store
drill Jobs' scripts run for real, on this machine's PostgreSQL, by a fake kubelet.

No API server runs here: none of this has run against a live cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import psycopg
import pytest
from jsonschema import Draft7Validator
from kubernetes import client

from mesh.k8s import jobs
from mesh.k8s.platform import CORDONED_BY, KubernetesPlatform, Settings
from mesh.platform import Platform, PlatformError
from mesh.platforms import get_platform
from mesh.process import ADMIN_TOKEN, MeshProcess
from tests.apiclient import register
from tests.conftest import temporary_database
from tests.k8sfake import FakeApiServer, Kubelet, load_objects

NS = "agentmesh-staging"
ZONE_A, ZONE_B = "eu-west-1a", "eu-west-1b"
FREE_A = "ip-10-0-11-23.eu-west-1.compute.internal"  # zone a, schedulable
MAINTENANCE_A = "ip-10-0-12-87.eu-west-1.compute.internal"  # zone a, cordoned by an operator


def _fake(kubelet: Kubelet | None = None, deployment: dict[str, Any] | None = None,
          drills_allowed: bool = False) -> FakeApiServer:
    namespace = load_objects("namespace.json")
    if drills_allowed:
        namespace["metadata"]["labels"]["meshsre.dev/drills"] = "allowed"
    return FakeApiServer(kubelet).seed(load_objects("nodes.json"), load_objects("pods.json"),
                                       namespace, deployment or load_objects("deployment.json"))


def _platform(fake: FakeApiServer) -> KubernetesPlatform:
    api = client.ApiClient(client.Configuration(host=fake.url))
    return KubernetesPlatform(api, Settings(namespace=NS))


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    with _fake() as server:
        yield server


def test_replicas_take_their_zone_from_the_node_and_readiness_from_the_pod(
    fake: FakeApiServer,
) -> None:
    platform = _platform(fake)
    assert isinstance(platform, Platform)
    replicas = platform.replicas()
    assert [(r.zone, r.ready) for r in replicas] == [
        (ZONE_A, True), (ZONE_A, True), (ZONE_B, True), (ZONE_B, False),
        ("eu-west-1c", True), ("eu-west-1c", True)]
    assert all(r.name.startswith("agentmesh-") for r in replicas)  # never the locust pod
    assert replicas[0].url == "http://10.0.11.140:8080"


def test_failing_a_zone_cordons_its_nodes_and_kills_its_mesh_pods_without_grace(
    fake: FakeApiServer,
) -> None:
    result = _platform(fake).fail_zone(ZONE_A)
    assert result["cordoned"] == [FREE_A]
    assert result["already_cordoned"] == [MAINTENANCE_A]
    assert result["killed"] == ["agentmesh-6d9f7c8b5d-4xq2m", "agentmesh-6d9f7c8b5d-9kd7w"]
    patches = fake.calls("PATCH", "/api/v1/nodes/")
    assert [p for p, _, _ in patches] == [f"/api/v1/nodes/{FREE_A}"]
    assert patches[0][2] == {"spec": {"unschedulable": True},
                             "metadata": {"annotations": {CORDONED_BY: ZONE_A}}}
    assert fake.content_types == ["application/merge-patch+json"]
    deletes = fake.calls("DELETE", "/pods/")
    assert {q["gracePeriodSeconds"][0] for _, q, _ in deletes} == {"0"}
    assert "locust-worker-7b8c9d6f4-q2w9e" in fake.pods  # not a mesh pod: untouched
    assert {p["spec"]["nodeName"] for p in fake.pods.values()
            if p["metadata"]["labels"].get("app.kubernetes.io/name") == "agentmesh"
            } & {FREE_A, MAINTENANCE_A} == set()


def test_restoring_a_zone_uncordons_only_what_the_failure_cordoned_and_is_idempotent(
    fake: FakeApiServer,
) -> None:
    platform = _platform(fake)
    platform.fail_zone(ZONE_A)
    first = platform.restore_zone(ZONE_A, timeout=5)
    assert first["uncordoned"] == [FREE_A]
    assert "unschedulable" not in fake.nodes[FREE_A]["spec"]
    assert CORDONED_BY not in fake.nodes[FREE_A]["metadata"]["annotations"]
    assert fake.nodes[MAINTENANCE_A]["spec"]["unschedulable"] is True  # the operator's cordon
    assert platform.restore_zone(ZONE_A, timeout=5)["uncordoned"] == []
    assert len(fake.calls("PATCH", "/api/v1/nodes/")) == 2


def test_an_unknown_zone_is_refused_before_anything_changes(fake: FakeApiServer) -> None:
    with pytest.raises(PlatformError, match=r"no node is labelled topology\.kubernetes\.io/zone=x"):
        _platform(fake).fail_zone("x")
    assert not [r for r in fake.requests if r[0] != "GET"]


def test_restore_gives_up_when_the_deployment_stays_short_of_ready_replicas() -> None:
    deployment = load_objects("deployment.json")
    deployment["status"]["readyReplicas"] = 4
    with _fake(deployment=deployment) as fake, \
            pytest.raises(PlatformError, match="has 4 of 6 replicas ready"):
        _platform(fake).restore_zone(ZONE_A, timeout=0)


def test_the_drill_jobs_are_valid_kubernetes_objects_under_the_restricted_standard() -> None:
    for kind in ("backup", "restore", "destroy"):
        job = jobs.job_manifest(kind, f"meshsre-{kind}-1", Settings(), "store.dump", 600)
        assert kubernetes_validate.validate(job, "1.32.0", strict=True)
        pod = job["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert job["spec"]["backoffLimit"] == 0  # a drill step never runs twice
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_destroying_the_store_needs_a_namespace_that_allows_drills(fake: FakeApiServer) -> None:
    with pytest.raises(PlatformError, match=r"meshsre\.dev/drills=allowed"):
        _platform(fake).destroy_store()
    assert fake.jobs == {}


def test_a_failed_job_is_an_error_that_quotes_its_log() -> None:
    def broken(job: dict[str, Any]) -> tuple[bool, str]:
        return False, "pg_dump: error: connection to server failed: Connection refused\n"

    with _fake(broken) as fake, pytest.raises(PlatformError, match="Connection refused"):
        _platform(fake).backup("backup/store.backup")


def _local_kubelet(store_url: str, claim_dir: Path, home: Path) -> Kubelet:
    """Runs a Job's container command here: env from its spec (the Secret's storage-url is
    store_url), the backup claim mounted at claim_dir."""
    def run(job: dict[str, Any]) -> tuple[bool, str]:
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {"PATH": os.environ["PATH"]}
        for var in container["env"]:
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            assert ref is None or ref == {"name": "agentmesh-secrets", "key": "storage-url"}
            env[var["name"]] = store_url if ref else var["value"]
        assert env["BACKUP_DIR"] == jobs.BACKUP_MOUNT
        env.update(BACKUP_DIR=str(claim_dir), HOME=str(home))
        done = subprocess.run(container["command"], env=env, capture_output=True, text=True,
                              timeout=120)
        return done.returncode == 0, done.stdout + done.stderr

    return run


def _exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


@pytest.mark.postgres
@pytest.mark.slow
def test_backup_destroy_and_restore_jobs_round_trip_a_real_postgresql_store(
    tmp_path: Path,
) -> None:
    with temporary_database() as url:
        with MeshProcess(url) as mesh, httpx.Client(base_url=mesh.url, timeout=5) as api:
            for _ in range(5):
                register(api)
        kubelet = _local_kubelet(url, tmp_path, tmp_path)
        with _fake(kubelet, drills_allowed=True) as fake:
            platform = _platform(fake)
            made = platform.backup(tmp_path / "backup" / "store.backup")
            with psycopg.connect(url) as conn:
                agents = conn.execute("SELECT count(*) FROM agents").fetchone()
                head = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC").fetchone()
            assert made["tables"]["agents"] == agents[0] == 5
            assert (made["audit_last_seq"], made["audit_head"]) == head
            file = made["location"].removeprefix("pvc://agentmesh-backups/")
            assert (tmp_path / file).stat().st_size == made["size_bytes"]

            name, admin = url.rsplit("/", 1)[1], url.rsplit("/", 1)[0] + "/postgres"
            platform.destroy_store()
            assert not _exists(admin, name)
            back = platform.restore(made["location"], timeout=30)
            assert back["tables"] == made["tables"]
            assert back["audit_head"] == made["audit_head"]
            assert _exists(admin, name) and not _exists(admin, f"{name}_restoring")
            assert [j["metadata"]["labels"]["meshsre.dev/drill"] for j in fake.jobs.values()
                    ] == ["backup", "destroy", "restore"]
        with MeshProcess(url) as mesh:
            check = httpx.get(mesh.url + "/v1/audit/verify", timeout=10,
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
        assert check["ok"] and check["head"] == made["audit_head"]


def test_the_scripts_refuse_the_maintenance_database(tmp_path: Path) -> None:
    run = _local_kubelet("postgresql://postgres@127.0.0.1:1/postgres", tmp_path, tmp_path)
    job = jobs.job_manifest("destroy", "meshsre-destroy-1", Settings(), "-", 60)
    ok, log = run(job)
    assert not ok and "refusing to touch database 'postgres'" in log


def test_mesh_platform_kubernetes_reads_the_kubeconfig(
    fake: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "staging",
        "clusters": [{"name": "staging", "cluster": {"server": fake.url}}],
        "users": [{"name": "sre", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "staging", "context": {"cluster": "staging", "user": "sre"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("MESH_PLATFORM", "kubernetes")
    monkeypatch.setenv("MESH_K8S_NAMESPACE", NS)
    platform = get_platform()
    assert platform.name == "kubernetes" and len(platform.replicas()) == 6


def test_mesh_platform_kubernetes_without_any_cluster_config_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(PlatformError, match="kubernetes: no cluster to talk to"):
        get_platform("kubernetes")


NETWORK_CHAOS_SCHEMA = json.loads(
    (Path(__file__).parent / "testdata" / "k8s" / "networkchaos.schema.json").read_text())


@pytest.mark.parametrize("mode", ["blackhole", "loss:20", "partition"])
def test_network_faults_are_network_chaos_objects_removed_by_restore(
    fake: FakeApiServer, mode: str
) -> None:
    platform = _platform(fake)
    failed = platform.fail_zone(ZONE_A, mode)
    assert failed["mode"] == mode and failed["killed"] == []
    (obj,) = fake.network_chaos.values()
    Draft7Validator(NETWORK_CHAOS_SCHEMA).validate(obj)
    spec = obj["spec"]
    assert spec["selector"]["nodeSelectors"] == {"topology.kubernetes.io/zone": ZONE_A}
    assert spec["selector"]["namespaces"] == [NS] and spec["mode"] == "all"
    if mode == "partition":
        # Cut from every pod on the other zones' nodes, none of its own zone's.
        assert spec["action"] == "partition" and spec["direction"] == "both"
        assert spec["target"]["selector"]["nodes"] == sorted(
            n["metadata"]["name"] for n in load_objects("nodes.json")["items"]
            if n["metadata"]["labels"]["topology.kubernetes.io/zone"] != ZONE_A)
    else:
        assert spec["action"] == "loss"
        assert spec["loss"]["loss"] == ("100" if mode == "blackhole" else "20")
    # Nothing was cordoned or killed: the pods keep running behind the fault.
    assert not fake.calls("PATCH", "/nodes/") and not fake.calls("DELETE", "/pods/")
    restored = platform.restore_zone(ZONE_A, timeout=5)
    assert restored["network_chaos_deleted"] == [obj["metadata"]["name"]]
    assert fake.network_chaos == {}
    assert platform.restore_zone(ZONE_A, timeout=5)["network_chaos_deleted"] == []


def test_the_schema_rejects_what_chaos_mesh_would(fake: FakeApiServer) -> None:
    _platform(fake).fail_zone(ZONE_A, "loss:20")
    (obj,) = fake.network_chaos.values()
    for breaks in ({"action": "drop"}, {"loss": {"loss": "120"}}, {"selectors": {}},
                   {"direction": "sideways"}):
        bad = {**obj, "spec": {**obj["spec"], **breaks}}
        assert list(Draft7Validator(NETWORK_CHAOS_SCHEMA).iter_errors(bad)), breaks


def test_a_bad_mode_is_refused_before_anything_changes(fake: FakeApiServer) -> None:
    with pytest.raises(PlatformError, match="loss:N with N a whole percent"):
        _platform(fake).fail_zone(ZONE_A, "loss:")
    assert fake.network_chaos == {} and not fake.calls("PATCH", "/nodes/")
