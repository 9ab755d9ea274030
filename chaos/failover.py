"""The `data` fault's measurements: the PostgreSQL primary fails under writes, wherever it is.

Two writers run through the front door from outside every zone. The SQL ledger inserts
numbered rows one at a time through the door's PostgreSQL frontend and records each one the
database acknowledged (its COMMIT returned): after the failover every acknowledged row must
exist (0 lost with synchronous replication; with asynchronous, what is lost is the RPO). The
mesh writer registers agents through the mesh's front door, recording each 201 in the load's
ledger, so the runtime's own recovery (pool, timeouts, breakers) is seen by a client too.

Failover time runs from the kill to the first write the ledger got acknowledged after its
first failure. Replication lag is Patroni's (`GET /cluster`, bytes behind the leader), sampled
before and during the failover. The audit chain is verified, end to end, before and after.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from chaoslib.exceptions import ActivityFailed

from chaos import runstate
from loadtests.ledger import Ledger as MeshLedger
from loadtests.ledger import missing
from mesh.local import datatier
from mesh.local.platform import LocalPlatform
from mesh.platforms import get_platform
from meshsre.identity import AgentKey

__all__ = [
    "FailoverDrill",
    "SqlLedger",
    "fail_primary_under_writes",
    "judge",
    "lag_bytes",
    "recovery_point",
    "restore_data_tier",
    "run_data_fault",
    "tier_healthy",
]

_TABLE = "meshsre_ledger"


@dataclass
class SqlLedger:
    """One INSERT at a time through the frontend, each acknowledged row noted with its time."""

    url: str
    interval: float = 0.02
    acked: list[tuple[int, float]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_TABLE} (id bigint PRIMARY KEY, at float8 NOT NULL)"
            )
            conn.execute(f"TRUNCATE {_TABLE}")
        self._thread = threading.Thread(target=self._run, name="sql-ledger", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        conn: Any = None
        n = 0
        while not self._stop.is_set():
            try:
                if conn is None:
                    # Short timeouts: a hung connection to a dead primary must not hide the
                    # moment the new one takes writes.
                    conn = psycopg.connect(
                        self.url, autocommit=True, connect_timeout=1,
                        options="-c statement_timeout=2000",
                    )
                n += 1
                conn.execute(f"INSERT INTO {_TABLE} VALUES (%s, %s)", (n, time.time()))
                self.acked.append((n, time.time()))
            except psycopg.Error as exc:
                self.failures.append((time.time(), type(exc).__name__))
                if conn is not None:
                    conn.close()
                    conn = None
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def writable_again(self, since: float) -> float | None:
        """When the first write acknowledged after a failure after ``since`` came back."""
        failed = [t for t, _ in self.failures if t >= since]
        if not failed:
            return None
        return next((at for _, at in self.acked if at > failed[0]), None)

    def lost(self) -> list[tuple[int, float]]:
        import psycopg

        ids = [i for i, _ in self.acked]
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(f"SELECT id FROM {_TABLE} WHERE id = ANY(%s)", (ids,)).fetchall()
        present = {r[0] for r in rows}
        return [(i, at) for i, at in self.acked if i not in present]


@dataclass
class _MeshWriter:
    """Registrations through the mesh's front door: 201s into the ledger, the rest counted."""

    url: str
    interval: float = 0.1
    ledger: MeshLedger = field(default_factory=MeshLedger)
    errors: dict[str, int] = field(default_factory=dict)
    error_times: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mesh-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5, trust_env=False) as client:
            while not self._stop.is_set():
                key = AgentKey.generate()
                body = key.registration("agent", "ops@example.com", ["search"])
                if self._send(client.post, "/v1/agents", 201, "write", json=body):
                    self.ledger.add(key.did, time.time())
                if self.ledger.entries:  # a read of an agent known to exist
                    self._send(client.get, f"/v1/agents/{self.ledger.entries[-1].did}", 200, "read")
                self._stop.wait(self.interval)

    def _send(self, method: Any, path: str, expect: int, what: str, **kw: Any) -> bool:
        try:
            r = method(path, **kw)
            kind = "" if r.status_code == expect else f"{what} {r.status_code}"
            if kind and not r.headers.get("content-type", "").startswith("application/json"):
                kind += " not json"  # the API's contract: every error has a JSON body
        except httpx.TimeoutException:
            kind = f"{what} timeout"
        except httpx.HTTPError as exc:
            kind = f"{what} {type(exc).__name__}"
        if kind:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self.error_times.append((time.time(), kind))
        return not kind

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def recovery_point(lost: list[tuple[int, float]], fault_at: float) -> float:
    """RPO: how far before the fault the oldest lost acknowledged write was; with nothing
    lost the point recovered to is the fault itself."""
    return round(max(0.0, fault_at - min(t for _, t in lost)), 3) if lost else 0.0


def lag_bytes(view: dict[str, Any] | None) -> int | None:
    """The largest lag of a standby behind the leader (Patroni says "unknown" without one)."""
    if view is None:
        return None
    lags = [m["lag"] for m in view.get("members", []) if isinstance(m.get("lag"), int)]
    return max(lags) if lags else None


def _verify(url: str, token: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        r = client.get("/v1/audit/verify", headers={"Authorization": f"Bearer {token}"})
    if r.status_code != 200:
        return {"ok": False, "error": f"HTTP {r.status_code}: {r.text[:200]}"}
    return dict(r.json())


@dataclass
class FailoverDrill:
    platform: LocalPlatform
    mesh_url: str
    admin_token: str
    warmup: float = 2.0
    failover_timeout: float = 60.0
    after: float = 3.0  # writes kept going once writable again, to see the runtime settle
    restore_timeout: float = 90.0


def run_data_fault(drill: FailoverDrill) -> dict[str, Any]:
    """Fail the primary under both writers, wait for a new primary to take writes, restore the
    failed member, and check the ledgers and the audit chain. Returns the measurements."""
    platform = drill.platform
    state = platform.cluster.load()
    if state.data_tier is None:
        raise RuntimeError("no data tier: start the cluster with `meshsre up --storage patroni`")
    members = state.data_members()
    sql = SqlLedger(datatier.frontend_url(str(state.data_tier["frontend"])))
    writer = _MeshWriter(drill.mesh_url)
    before_chain = _verify(drill.mesh_url, drill.admin_token)
    lags: list[tuple[float, int | None]] = []
    sql.start()
    writer.start()
    fault: dict[str, Any] = {}
    restored: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + drill.warmup
        while time.monotonic() < deadline:
            lags.append((time.time(), lag_bytes(datatier.cluster_view(members))))
            time.sleep(0.25)
        fault = platform.fail_primary()
        deadline = time.monotonic() + drill.failover_timeout
        while sql.writable_again(fault["at"]) is None and time.monotonic() < deadline:
            lags.append((time.time(), lag_bytes(datatier.cluster_view(members))))
            time.sleep(0.25)
        time.sleep(drill.after)
    finally:
        writer.stop()
        sql.stop()
        if fault:
            restored = platform.restore_data_tier(drill.restore_timeout)
    at = fault["at"]
    back = sql.writable_again(at)
    lost = sql.lost()
    new_primary = datatier.primary(members)
    mesh_lost = missing(drill.mesh_url, (a.did for a in writer.ledger.entries))
    after_chain = _verify(drill.mesh_url, drill.admin_token)
    before = [lag for t, lag in lags if t < at and lag is not None]
    during = [lag for t, lag in lags if t >= at and lag is not None]
    late = [t for t, _ in writer.error_times if t >= at]
    after_back = [kind for t, kind in writer.error_times if back and t > back]
    return {
        "replication": state.data_tier["replication"],
        "failed_primary": fault["primary"],
        "failed_zone": fault["zone"],
        "new_primary": new_primary.name if new_primary else None,
        "failover_seconds": None if back is None else round(back - at, 2),
        "sql_writes_acked": len(sql.acked),
        "sql_write_failures": len(sql.failures),
        "writes_lost": len(lost),
        "rpo_seconds": recovery_point(lost, at),
        "mesh_writes_acked": len(writer.ledger.entries),
        "mesh_write_errors": dict(sorted(writer.errors.items())),
        "mesh_writes_lost": len(mesh_lost),
        "mesh_recovered_seconds": round(max(late) - at, 2) if late else 0.0,
        # Errors once the database took writes again: what the runtime's pools still held.
        "mesh_errors_after_writable": {k: after_back.count(k) for k in sorted(set(after_back))},
        "lag_bytes_before": max(before) if before else None,
        "lag_bytes_during": max(during) if during else None,
        "audit_chain_before": before_chain,
        "audit_chain_after": after_chain,
        "audit_chain_ok": bool(before_chain.get("ok") and after_chain.get("ok")),
        "fault": fault,
        "restore": restored,
    }


# Chaos Toolkit activities of chaos/data-failover.json (the `data` fault mode).
RECOVERY_MARGIN_S = 2.0
FAILOVER_OBJECTIVE_S = 30.0  # the leader key's TTL (20 s), an election and the door's checks


def _local() -> LocalPlatform:
    platform = get_platform()
    if not isinstance(platform, LocalPlatform):
        raise ActivityFailed(f"the data fault runs on the local cluster, not {platform.name}")
    return platform


def tier_healthy(configuration: Mapping[str, Any] | None = None,
                 secrets: Mapping[str, Any] | None = None) -> bool:
    """One primary running, and every other member of the data tier streaming from it
    (Patroni's /cluster): a member that came back from a fault has rejoined."""
    state = _local().cluster.load()
    members = state.data_members()
    view = datatier.cluster_view(members)
    if not members or view is None:
        return False
    found = view.get("members", [])
    return (len(found) == len(members)
            and sum(m.get("role") == "leader" for m in found) == 1
            and all(m.get("state") == ("running" if m.get("role") == "leader" else "streaming")
                    for m in found))


def fail_primary_under_writes(failover_timeout: float = 60.0,
                              configuration: Mapping[str, Any] | None = None,
                              secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The data fault, measured (``run_data_fault``): fails when the failover took longer
    than FAILOVER_OBJECTIVE_S, an acknowledged write was lost under synchronous replication,
    or the audit chain does not verify across it."""
    drill = FailoverDrill(_local(), runstate.mesh_url(configuration),
                          runstate.required_admin_token(secrets, "the data fault"),
                          failover_timeout=float(failover_timeout))
    result = run_data_fault(drill)
    keys = ("replication", "failed_primary", "failed_zone", "new_primary", "failover_seconds",
            "sql_writes_acked", "writes_lost", "rpo_seconds", "mesh_writes_acked",
            "mesh_write_errors", "mesh_writes_lost", "mesh_recovered_seconds",
            "mesh_errors_after_writable", "lag_bytes_before", "lag_bytes_during",
            "audit_chain_ok")
    notes = runstate.notes(configuration)
    # The clock marked the fault when this activity began; the primary died after the
    # writers' warm-up. Detection and recovery count from the kill.
    # The load's history counts whole seconds and reaches its file up to a second late: the
    # after-window starts past the second of the clients' last error (4 of them fell in it).
    recovered = result["fault"]["at"] + result["mesh_recovered_seconds"] + RECOVERY_MARGIN_S
    notes.merge("fault", {"started_at": round(result["fault"]["at"], 3),
                          "clients_recovered_at": round(recovered, 3)})
    notes.merge("measurements", {k: result[k] for k in keys})
    sync = result["replication"] == "sync"
    objectives = {
        "failover-time": (f"<= {FAILOVER_OBJECTIVE_S:g} s", result["failover_seconds"],
                          result["failover_seconds"] is not None
                          and result["failover_seconds"] <= FAILOVER_OBJECTIVE_S),
        # Asynchronous replication may lose what the standby had not received: its RPO is
        # measured and reported, not held to 0.
        "acknowledged-writes-lost": ("0" if sync else "reported (async)",
                                     result["writes_lost"] + result["mesh_writes_lost"],
                                     not sync or result["writes_lost"] + result[
                                         "mesh_writes_lost"] == 0),
        "audit-chain-valid": ("valid before and after", result["audit_chain_ok"],
                              result["audit_chain_ok"]),
    }
    judge(configuration, "data fault", objectives, {k: result[k] for k in keys})
    return result


def judge(configuration: Mapping[str, Any] | None, what: str,
          objectives: Mapping[str, tuple[str, Any, bool]], details: Any) -> None:
    """Record each objective (target, measured, met) in the run's notes; fail when one is
    missed, naming it."""
    runstate.notes(configuration).merge("objectives", {
        oid: {"target": t, "measured": m, "met": ok} for oid, (t, m, ok) in objectives.items()})
    missed = [oid for oid, (_, _, ok) in objectives.items() if not ok]
    if missed:
        raise ActivityFailed(f"{what}: missed {', '.join(missed)}: {details}")


def restore_data_tier(timeout: float = 90.0, configuration: Mapping[str, Any] | None = None,
                      secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Bring every member of the data tier back (idempotent: the rollback)."""
    return _local().restore_data_tier(float(timeout))
