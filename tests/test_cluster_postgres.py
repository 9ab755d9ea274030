"""The local cluster on PostgreSQL: revocation propagation across replicas, and a backup,
destroy (drop the database) and restore drill while the replicas keep running.

Started through the Python API (the SQLite module goes through the CLI): 3 zones x 1 replica,
HAProxy, no Prometheus or Alertmanager (not under test here).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from mesh.local import procs
from mesh.local.cluster import Cluster, proc_of
from mesh.local.platform import LocalPlatform
from mesh.local.spec import ClusterSpec
from mesh.local.state import StateDir
from tests.clusterkit import percentile, register, revocation_delays
from tests.services import pg_admin_url

pytestmark = pytest.mark.postgres

PG_ADMIN_URL = pg_admin_url()


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    name = f"meshsre_cluster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            for db in (name, f"{name}_restoring"):
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@pytest.fixture(scope="module")
def cluster(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    paths = StateDir(tmp_path_factory.mktemp("pgcluster"))
    local = Cluster(paths)
    spec = ClusterSpec(replicas_per_zone=1, storage=database, base_port=0,
                       without=frozenset({"prometheus", "alertmanager"}))
    try:
        result = local.up(spec, timeout=30)
        print(f"\nMEASURED up: ready in {result.seconds:.2f}s (3 zones x 1 replica, PostgreSQL)")
        yield local
    finally:
        local.down()


@pytest.fixture
def front(cluster: Cluster) -> Iterator[httpx.Client]:
    url = cluster.load().url_of("haproxy")
    assert url is not None
    with httpx.Client(base_url=url, timeout=5, trust_env=False) as client:
        yield client


def _admin(cluster: Cluster) -> dict[str, str]:
    return {"Authorization": f"Bearer {cluster.paths.admin_token()}"}


def _wait(predicate: Any, timeout: float, step: float = 0.1) -> float:
    began = time.monotonic()
    while not predicate():
        assert time.monotonic() - began < timeout, f"still false after {timeout}s"
        time.sleep(step)
    return time.monotonic() - began


@pytest.mark.slow
def test_a_revocation_through_one_replica_is_enforced_by_every_other_within_a_second(
    cluster: Cluster, front: httpx.Client
) -> None:
    did = register(front)
    urls = [c.url for c in cluster.load().replicas()]
    delays = revocation_delays(urls, cluster.paths.admin_token(), did, rounds=20)
    p50, p99 = percentile(delays, 50), percentile(delays, 99)
    print(f"\nMEASURED revocation propagation (PostgreSQL, {len(delays)} samples): "
          f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms")
    assert len(delays) == 20 * 2
    assert p99 < 1.0


@pytest.mark.slow
def test_backup_drop_restore_keeps_the_audit_chain_valid_and_every_record(
    cluster: Cluster, front: httpx.Client, tmp_path: Path
) -> None:
    platform = LocalPlatform(cluster.paths)
    dids = [register(front) for _ in range(10)]
    made = platform.backup(tmp_path / "mesh.dump")
    assert made["backend"] == "postgresql" and made["size_bytes"] > 0
    assert made["tables"]["agents"] >= 10

    gone = platform.destroy_store()
    assert gone["killed"] == []  # the replicas stay up and must report the store gone
    _wait(lambda: not any(r.ready for r in platform.replicas()), timeout=10)
    back = platform.restore(tmp_path / "mesh.dump", timeout=30)
    assert back["tables"] == made["tables"] and back["audit_head"] == made["audit_head"]
    assert len(back["witness_reset"]) == 3  # each replica forgets the newer checkpoint
    print(f"\nMEASURED PostgreSQL restore {back['duration_seconds']:.2f}s, replicas ready "
          f"{back['replicas_ready_seconds']:.2f}s later")
    assert all(r.ready for r in platform.replicas())
    _wait(lambda: front.get("/health/ready").status_code == 200, timeout=10)

    audit = front.get("/v1/audit/verify", headers=_admin(cluster)).json()
    assert audit["ok"] and audit["length"] == made["tables"]["audit"]
    assert all(front.get(f"/v1/agents/{d}").status_code == 200 for d in dids)
    register(front)
    assert front.get("/v1/audit/verify", headers=_admin(cluster)).json()["ok"]


def test_down_stops_every_process_it_started(cluster: Cluster) -> None:
    state = cluster.load()
    recorded = [proc_of(c) for c in state.components]
    assert all(procs.alive(p) for p in recorded)
    result = cluster.down()
    # As root the zones' network namespaces go too, each on a line of its own.
    stopped = {k: v for k, v in result.items() if not k.startswith("netns ")}
    assert set(stopped.values()) == {"stopped"} and len(stopped) == len(recorded)
    assert set(result.values()) - set(stopped.values()) <= {"removed"}
    assert not any(procs.alive(p) for p in recorded)
    assert procs.find_tagged(str(cluster.paths.root)) == []
