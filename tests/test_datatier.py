"""The zonal data tier (`meshsre up --storage patroni`): real etcd, Patroni, PostgreSQL and
HAProxy on free ports, its configs accepted by the real tools, and the `data` fault: the
primary killed under writes fails over with no acknowledged write lost (synchronous), or with
its RPO measured (asynchronous), the audit chain intact across it.

Each live cluster is 3 zones x 1 replica without Prometheus, Alertmanager or NATS (not under
test here). State dirs are made under /tmp with o+x, so that the postgres user that runs
Patroni can reach its data directories (pytest's own tmp dirs are 0700 as root).
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from alerts.datatier import SERIES
from chaos.failover import FailoverDrill, SqlLedger, recovery_point, run_data_fault
from dashboards.build import all_dashboards
from dashboards.lint import metric_names, queries
from mesh.local import datatier, procs
from mesh.local.cluster import Cluster
from mesh.local.errors import ClusterError
from mesh.local.platform import LocalPlatform
from mesh.local.render import render_all
from mesh.local.spec import ClusterSpec, find_binary, plan
from mesh.local.state import StateDir
from mesh.platform import zone_fault
from tests.clusterkit import meshsre, register
from tests.services import pg_admin_url

pytestmark = pytest.mark.skipif(
    shutil.which("patroni") is None or shutil.which("etcd") is None,
    reason="needs Debian's patroni and etcd-server (make setup installs them)",
)
_LEAN = frozenset({"prometheus", "alertmanager", "nats"})


@pytest.fixture
def state_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="meshsre-pg-", dir="/tmp"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _spec(replication: str = "sync", without: frozenset[str] = _LEAN) -> ClusterSpec:
    return ClusterSpec(replicas_per_zone=1, storage="patroni", replication=replication,
                       base_port=0, without=without)


def _up(root: Path, replication: str, without: frozenset[str] = _LEAN) -> Cluster:
    cluster = Cluster(StateDir(root / "state"))
    result = cluster.up(_spec(replication, without), timeout=120)
    print(f"\nMEASURED up with patroni ({replication}): ready in {result.seconds:.1f}s")
    return cluster


def _patroni_configs(root: Path, replication: str) -> dict[str, dict[str, object]]:
    paths = StateDir(root / replication)
    paths.create()
    state = plan(_spec(replication, frozenset()), paths)
    render_all(state, paths, root)
    return {m.name: json.loads((paths.config / f"patroni-{m.zone}.yml").read_text())
            for m in state.data_members()}


def test_the_replication_setting_turns_patronis_quorum_commit_on_or_off(
        state_dir: Path) -> None:
    for replication, synchronous in (("sync", "quorum"), ("async", False)):
        configs = _patroni_configs(state_dir, replication)
        assert sorted(configs) == ["pg-a", "pg-b", "pg-c"]
        for config in configs.values():
            dcs = config["bootstrap"]["dcs"]  # type: ignore[index]
            assert dcs["synchronous_mode"] == synchronous
            assert dcs["synchronous_mode_strict"] is False
            assert len(config["etcd3"]["hosts"]) == 3  # type: ignore[index]


def test_haproxy_and_promtool_accept_the_configs_with_the_postgres_door_and_scrapes(
        state_dir: Path) -> None:
    paths = StateDir(state_dir / "state")
    paths.create()
    state = plan(_spec(without=frozenset()), paths)
    render_all(state, paths, state_dir)
    cfg = paths.config / "haproxy.cfg"
    done = subprocess.run([find_binary("haproxy"), "-c", "-f", str(cfg)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    text = cfg.read_text()
    assert f"bind {state.data_tier['frontend']}" in text  # type: ignore[index]
    assert "option httpchk GET /primary" in text and "on-marked-down shutdown-sessions" in text
    for m in state.data_members():
        assert f"server {m.name} {m.host}:{m.aux_port} check port {m.port}" in text
    assert state.storage_url == datatier.frontend_url(str(state.data_tier["frontend"]))  # type: ignore[index]
    done = subprocess.run(["promtool", "check", "config", "--syntax-only",
                           str(paths.config / "prometheus.yml")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    scrapes = (paths.config / "prometheus.yml").read_text()
    assert "job_name: patroni" in scrapes and "job_name: etcd" in scrapes


def test_patroni_storage_without_the_front_door_or_with_bad_replication_is_refused() -> None:
    with pytest.raises(ClusterError, match="drop --without haproxy"):
        _spec(without=frozenset({"haproxy"}))
    with pytest.raises(ClusterError, match="sync or async"):
        _spec(replication="quorum")
    done = meshsre("up", "--storage", "patroni", "--replication", "quorum")
    assert done.returncode == 2 and "'quorum' is not one of 'sync', 'async'" in done.stderr


@pytest.mark.postgres
def test_the_sql_ledger_finds_a_lost_acknowledged_write_and_dates_the_rpo() -> None:
    """What a failover to a standby that lacked the last writes looks like to the ledger:
    the machine's PostgreSQL, with acknowledged rows deleted behind the ledger's back."""
    name = f"meshsre_ledger_{uuid.uuid4().hex[:10]}"
    admin = pg_admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        ledger = SqlLedger(admin.rsplit("/", 1)[0] + "/" + name)
        ledger.start()
        deadline = time.monotonic() + 10
        while len(ledger.acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        ledger.stop()
        assert ledger.lost() == [] and len(ledger.acked) >= 20
        tail = ledger.acked[-3:]
        with psycopg.connect(ledger.url, autocommit=True) as conn:
            conn.execute("DELETE FROM meshsre_ledger WHERE id = ANY(%s)",
                         ([i for i, _ in tail],))
        assert ledger.lost() == tail
        fault_at = tail[-1][1] + 0.5
        assert recovery_point(tail, fault_at) == round(fault_at - tail[0][1], 3)
        assert recovery_point([], fault_at) == 0.0
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
def test_sync_tier_serves_the_mesh_fails_over_without_losing_a_write_and_down_leaves_nothing(
        state_dir: Path) -> None:
    cluster = _up(state_dir, "sync")
    try:
        state = cluster.load()
        members = state.data_members()
        view = datatier.cluster_view(members)
        assert view is not None
        roles = sorted(m["role"] for m in view["members"])
        assert roles == ["leader", "quorum_standby", "quorum_standby"], view
        # The last zone bootstraps the primary; each member runs in its zone's namespace.
        assert next(m["name"] for m in view["members"] if m["role"] == "leader") == "pg-c"
        _in_their_zones(cluster)
        assert all(m["state"] in ("running", "streaming") for m in view["members"]), view
        info = cluster.describe()
        assert info["postgres_door"] == state.storage_url
        with httpx.Client(base_url=info["front_door"], timeout=5, trust_env=False) as client:
            did = register(client)
        # The replicas' store is the door's frontend, and the row is on the primary behind it.
        with psycopg.connect(state.storage_url, connect_timeout=5) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
            assert conn.execute("SELECT count(*) FROM agents WHERE did = %s",
                                (did,)).fetchone() == (1,)

        result = run_data_fault(FailoverDrill(LocalPlatform(cluster.paths), info["front_door"],
                                              info["admin_token"]))
        print(f"MEASURED data fault (sync): {json.dumps(_headline(result))}")
        assert result["new_primary"] not in (None, result["failed_primary"])
        assert result["failover_seconds"] is not None and 0 < result["failover_seconds"] < 30
        assert result["sql_writes_acked"] > 50 and result["sql_write_failures"] > 0
        assert result["writes_lost"] == 0 and result["rpo_seconds"] == 0.0
        assert result["mesh_writes_acked"] > 0 and result["mesh_writes_lost"] == 0
        assert not [k for k in result["mesh_write_errors"] if "not json" in k], result
        assert result["audit_chain_ok"], (result["audit_chain_before"],
                                          result["audit_chain_after"])
        assert result["audit_chain_after"]["length"] > result["audit_chain_before"]["length"]
        assert result["restore"]["started"] == [result["failed_primary"]]
        view = datatier.cluster_view(members)
        assert view is not None and len(view["members"]) == 3
        assert sum(m["role"] == "leader" for m in view["members"]) == 1
    finally:
        cluster.down()
    assert procs.find_tagged(str(cluster.paths.root)) == []
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=10)
    assert str(cluster.paths.root) not in ps.stdout


def _in_their_zones(cluster: Cluster) -> None:
    """Each etcd and Patroni member runs in its zone's network namespace, on its address."""
    state = cluster.load()
    assert state.network is not None, "as root the cluster runs the zones layout"
    links = {z["zone"]: z for z in state.network["zones"]}
    for c in state.components:
        if c.kind in datatier.KINDS:
            netns = Path(f"/run/netns/{links[c.zone]['netns']}")
            assert Path(f"/proc/{c.pid}/ns/net").stat().st_ino == netns.stat().st_ino, c.name
            assert c.host == str(ipaddress.ip_network(links[c.zone]["subnet"])[5]), c


def _prometheus(url: str, path: str, **params: str) -> Any:
    r = httpx.get(f"{url}/api/v1/{path}", params=params, timeout=5, trust_env=False)
    r.raise_for_status()
    return r.json()["data"]


@pytest.mark.slow
def test_the_data_failover_drill_on_an_async_tier_records_rpo_alerts_and_detection(
        state_dir: Path) -> None:
    """`meshsre chaos data-failover` end to end, with Prometheus, Alertmanager and the load."""
    cluster = _up(state_dir, "async", frozenset({"nats"}))
    try:
        prom = cluster.describe()["prometheus"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # every member scraped, every series alerts name
            names = {r["__name__"] for r in _prometheus(
                prom, "series", **{"match[]": '{job=~"patroni|etcd"}'})}
            up = _prometheus(prom, "query", query='sum by (job) (up{job=~"patroni|etcd"})')
            scraped = {r["metric"]["job"]: r["value"][1] for r in up["result"]}
            if names >= SERIES and scraped == {"patroni": "3", "etcd": "3"}:
                break
            time.sleep(1)
        assert names >= SERIES, SERIES - names
        assert scraped == {"patroni": "3", "etcd": "3"}
        # The dashboards' data-tier panels (skipped by the live check on SQLite) have data.
        panels = [(where, q) for board in all_dashboards() for where, q in queries(board)
                  if not where.startswith("variable") and metric_names(q) <= SERIES]
        assert len(panels) >= 4
        empty = [where for where, q in panels
                 if not _prometheus(prom, "query", query=q)["result"]]
        assert empty == []
        out = state_dir / "out"
        done = meshsre("chaos", "data-failover", "--state-dir", str(cluster.paths.root),
                       "--out", str(out), "--run-id", "drill", timeout=400)
        record = json.loads((out / "drill" / "chaos-data-failover.json").read_text())
        m = record["measurements"]
        print(f"MEASURED data-failover drill (async): {json.dumps(m)}")
        assert done.returncode == 0 and record["passed"], done.stderr[-3000:]
        assert m["replication"] == "async" and m["new_primary"] != m["failed_primary"]
        assert 0 < m["failover_seconds"] < 30
        # Whatever was lost is counted and dated: RPO is 0 exactly when nothing was.
        assert (m["writes_lost"] == 0) == (m["rpo_seconds"] == 0.0)
        assert m["audit_chain_ok"] and m["ttd_seconds"] is not None, m
        assert record["objectives"]["acknowledged-writes-lost"]["target"] == "reported (async)"
        firing = [a["labels"]["alertname"] for a in _prometheus(prom, "alerts")["alerts"]
                  if a["state"] == "firing"]
        assert "MeshDatabasePrimaryChanged" in firing, firing
        assert "MeshDatabaseNoPrimary" not in firing  # 10 s without a primary does not page
        assert datatier.primary(cluster.load().data_members()) is not None
    finally:
        cluster.down()
    assert procs.find_tagged(str(cluster.paths.root)) == []


def _headline(result: dict[str, object]) -> dict[str, object]:
    keys = ("failed_primary", "new_primary", "failover_seconds", "sql_writes_acked",
            "writes_lost", "rpo_seconds", "mesh_writes_acked", "mesh_write_errors",
            "mesh_writes_lost", "mesh_recovered_seconds", "mesh_errors_after_writable",
            "lag_bytes_before", "lag_bytes_during",
            "audit_chain_ok")
    return {k: result[k] for k in keys}


@pytest.mark.slow
def test_zone_faults_on_the_tier_quorum_holds_and_a_partitioned_primary_fails_over(
        state_dir: Path) -> None:
    """Members live in their zones: a standby's zone blackholed stalls no commit (quorum), and
    `meshsre chaos az-failure --mode partition --var zone=primary` fails the primary over with
    no acknowledged write lost, checked once the old primary's zone is back."""
    cluster = _up(state_dir, "sync", frozenset({"nats"}))
    try:
        platform = LocalPlatform(cluster.paths)
        state = cluster.load()
        members = state.data_members()
        assert datatier.primary(members).name == "pg-c"  # type: ignore[union-attr]
        ledger = SqlLedger(datatier.frontend_url(str(state.data_tier["frontend"])))  # type: ignore[index]
        ledger.start()
        time.sleep(1)
        at = time.time()
        with zone_fault(platform, "a", "blackhole", timeout=60):
            time.sleep(10)
        time.sleep(1)
        ledger.stop()
        acked = [t for _, t in ledger.acked if t > at]
        pause = max(b - a for a, b in itertools.pairwise([at, *acked]))
        print(f"\nMEASURED standby zone a blackholed 10 s: {len(acked)} writes acknowledged,"
              f" longest pause {pause:.2f} s, {len(ledger.failures)} failures")
        assert pause < 1.0 and ledger.failures == [] and ledger.lost() == []

        out = state_dir / "out"
        done = meshsre("chaos", "az-failure", "--mode", "partition", "--var", "zone=primary",
                       "--state-dir", str(cluster.paths.root), "--out", str(out),
                       "--run-id", "partition", timeout=600)
        record = json.loads((out / "partition" / "chaos-az-failure-partition.json").read_text())
        m, objectives = record["measurements"], record["objectives"]
        print(f"MEASURED partition of the primary's zone: "
              f"{ {k: m.get(k) for k in _ZONE_DATA} } passed={record['passed']}"
              f" failures={record['failures']}")
        assert m["zone"] == "c" and m["data_role"] == "leader", done.stderr[-2000:]
        assert m["failed_primary"] == "pg-c" and m["new_primary"] in ("pg-a", "pg-b")
        assert 0 < m["failover_seconds"] <= 30 and objectives["failover-time"]["met"]
        assert m["sql_writes_acked"] > 100 and m["sql_writes_lost"] == 0
        assert m["data_tier_whole_again"] and m["writes_lost"] == 0
    finally:
        cluster.down()
    assert procs.find_tagged(str(cluster.paths.root)) == []


_ZONE_DATA = ("data_role", "failed_primary", "new_primary", "failover_seconds",
              "sql_writes_paused_seconds", "sql_writes_acked", "sql_writes_lost", "rpo_seconds",
              "lag_bytes_before", "lag_bytes_during", "ttd_seconds", "ttd_alert",
              "errors_by_kind", "writes_lost")
