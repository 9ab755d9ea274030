"""The data tier across a zone fault (az-failure on `meshsre up --storage patroni`).

A zone's fault takes its PostgreSQL member with it. Before the fault the drill notes that
member's role and starts the SQL ledger (chaos.failover.SqlLedger: one INSERT at a time
through the front door's PostgreSQL frontend) and a sampler of Patroni's replication lag. After
the zone is restored and the tier is whole again (the old member rejoined: a primary that was
cut off comes back as a standby, and only then would a split brain lose writes), the ledger is
checked: how long writes paused, the failover when the zone held the primary, acknowledged
writes lost and the RPO. ``MESHSRE_CHAOS_ZONE=primary`` fails whichever zone holds the primary.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chaoslib.exceptions import ActivityFailed

from chaos import runstate
from chaos.failover import (
    FAILOVER_OBJECTIVE_S,
    SqlLedger,
    judge,
    lag_bytes,
    recovery_point,
    tier_healthy,
)
from mesh.local import datatier
from mesh.local.platform import LocalPlatform
from mesh.local.state import ClusterState, Component
from mesh.platforms import get_platform

__all__ = ["PRIMARY", "data_tier_after_zone_fault", "primary_zone", "watch"]

PRIMARY = "primary"  # the zone setting that means "the zone holding the PostgreSQL primary"


def _tier() -> ClusterState | None:
    """The local cluster's state when it runs the Patroni tier, else None."""
    platform = get_platform()
    if not isinstance(platform, LocalPlatform):
        return None
    state = platform.cluster.load()
    return state if state.data_tier is not None else None


def _members() -> list[Component]:
    state = _tier()
    return state.data_members() if state else []


def primary_zone() -> str:
    members = _members()
    if not members:
        raise ActivityFailed("zone 'primary' needs the Patroni tier: meshsre up --storage patroni")
    found = datatier.primary(members)
    if found is None or not found.zone:
        raise ActivityFailed("no member of the data tier is the primary: nothing to fail")
    return found.zone


@dataclass
class _Watch:
    zone: str
    members: list[Component]
    ledger: SqlLedger
    lags: list[tuple[float, int | None]] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)
    armed_at: float = 0.0  # the moment just before the zone failed
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def member(self) -> str:
        """The failed zone's Patroni member."""
        return next((m.name for m in self.members if m.zone == self.zone), "")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.lags.append((time.time(), lag_bytes(datatier.cluster_view(self.members))))
            self._stop.wait(0.5)

    def start(self) -> None:
        view = datatier.cluster_view(self.members) or {}
        self.roles = {m["name"]: m.get("role", "") for m in view.get("members", [])}
        self.ledger.start()
        self._thread = threading.Thread(target=self._sample, name="lag-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.ledger.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)


_WATCHES: dict[str, _Watch] = {}  # by run dir: the activities of one run share its watch


def watch(zone: str, configuration: Mapping[str, Any] | None) -> None:
    """Start watching the data tier before the zone fails (no data tier: nothing to watch)."""
    state = _tier()
    if state is None or state.data_tier is None:
        return
    members = state.data_members()
    w = _Watch(zone, members, SqlLedger(datatier.frontend_url(str(state.data_tier["frontend"]))))
    w.start()
    time.sleep(1.0)  # acknowledged writes and lag samples from before the fault
    w.armed_at = time.time()
    _WATCHES[str(runstate.run_dir(configuration))] = w
    runstate.notes(configuration).merge("measurements", {
        "replication": state.data_tier["replication"], "data_member": w.member,
        "data_role": w.roles.get(w.member)})


def _longest_pause(acked: list[float], since: float, until: float) -> float:
    """The longest time without an acknowledged write between ``since`` and ``until``."""
    marks = [since, *(t for t in acked if since < t < until), until]
    return round(max(b - a for a, b in itertools.pairwise(marks)), 2)


def data_tier_after_zone_fault(timeout: float = 90.0,
                               configuration: Mapping[str, Any] | None = None,
                               secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """After the zone's restore: wait until the tier is whole, stop the ledger and judge it.
    Fails when an acknowledged write is lost under synchronous replication, when a failover
    (the zone held the primary) took longer than FAILOVER_OBJECTIVE_S, or when the tier is not
    whole again within ``timeout``."""
    w = _WATCHES.pop(str(runstate.run_dir(configuration)), None)
    if w is None:
        return {"skipped": "no data tier was watched (not the Patroni tier, or no fault)"}
    notes = runstate.notes(configuration)
    at = w.armed_at  # the run's clock marked the fault before the watch's warm-up
    restored = float((notes.get("fault") or {}).get("ended_at") or time.time())
    deadline = time.monotonic() + float(timeout)
    while not (healthy := tier_healthy(configuration)) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1.0)  # writes to the whole tier again
    w.stop()
    lost = w.ledger.lost()
    acked = [t for _, t in w.ledger.acked]
    member = w.member
    held_primary = w.roles.get(member) == "leader"
    new = datatier.primary(w.members)
    back = w.ledger.writable_again(at)
    failover = round(back - at, 2) if held_primary and back is not None else None
    before = [lag for t, lag in w.lags if t < at and lag is not None]
    during = [lag for t, lag in w.lags if at <= t <= restored and lag is not None]
    result = {
        "data_role": w.roles.get(member), "failed_primary": member if held_primary else None,
        "new_primary": new.name if new else None, "failover_seconds": failover,
        "sql_writes_paused_seconds": _longest_pause(acked, at, restored),
        "sql_writes_acked": len(acked), "sql_write_failures": len(w.ledger.failures),
        "sql_writes_lost": len(lost), "rpo_seconds": recovery_point(lost, at),
        "lag_bytes_before": max(before) if before else None,
        "lag_bytes_during": max(during) if during else None,
        "data_tier_whole_again": healthy,
    }
    notes.merge("measurements", result)
    sync = notes.get("measurements", {}).get("replication") == "sync"
    objectives: dict[str, tuple[str, Any, bool]] = {
        "acknowledged-sql-writes-lost": ("0" if sync else "reported (async)", len(lost),
                                         not sync or not lost),
        "data-tier-whole-again": (f"within {float(timeout):g} s", healthy, healthy),
    }
    if held_primary:
        objectives["failover-time"] = (f"<= {FAILOVER_OBJECTIVE_S:g} s", failover,
                                       failover is not None and failover <= FAILOVER_OBJECTIVE_S)
    judge(configuration, "data tier across the zone fault", objectives, result)
    return result
