"""Zones and resilience: replicas ready per zone, load shedding, circuit breakers, storage,
the zonal data tier and revocation propagation. The page to open during an AZ failure."""

from __future__ import annotations

from typing import Any

from grafanalib.core import Dashboard

from alerts.catalog import CATALOG
from alerts.datatier import ETCD_JOB, LAG_BYTES, PATRONI_JOB
from dashboards.layout import Grid, dashboard
from dashboards.panels import (
    MESH,
    RATE,
    mesh_variables,
    stat,
    state_timeline,
    steps,
    timeseries,
    value_text,
)
from dashboards.slos import backup_age_stat

__all__ = ["UID", "build"]

UID = "meshsre-zones"

_TARGETS = f"up{{{MESH}}}"
# Ready means scraped (up) and reaching the store, the same rule as instance:agentmesh_ready:bool
# behind MeshZoneDown and MeshReplicaDown. A replica that cannot be scraped has no store_up,
# so the `or` arm counts it from `up` as 0: a zone with every replica down shows 0, not a gap.
_READY_BY_ZONE = (
    f"sum by (zone) ({_TARGETS} * on (instance, job) group_left () agentmesh_store_up{{{MESH}}}"
    f" or {_TARGETS})"
)
_REQUESTS = "agentmesh_api_request_duration_seconds_count"
# Event counters with labels have no series until the first event: `or` this zero per zone so
# the panel says 0, not "No data" (which also is what a broken query shows).
_NONE_BY_ZONE = f"0 * sum by (zone) (rate({_REQUESTS}{{{MESH}}}[{RATE}]))"
_BREAKER = value_text({0: ("closed", "green"), 1: ("half-open", "orange"), 2: ("open", "red")})
# Burn-rate alerts of the SLOs whose catalog entry points here (revocation propagation).
_SLO_ALERTS = [slo.alert_name for slo in CATALOG if slo.dashboard == UID]
_PROPAGATION = steps("green", (1, "orange"), (5, "red"))
_UP = value_text({0: ("down", "red"), 1: ("up", "green")})


def _availability(g: Grid) -> None:
    g.row("Availability")
    g.add(stat("Ready replicas per zone", "Replicas that Prometheus can scrape and that "
               "reach the store, per zone. 0 means the zone is down.",
               [(_READY_BY_ZONE, "{{zone}}")], "short",
               thresholds=steps("red", (1, "orange"), (2, "green")),
               alerts=["MeshZoneDown", "MeshReplicaDown"]), 8, 8)
    g.add(timeseries("Ready replicas per zone over time", "The same count over time: a drop "
                     "to 0 is a zone outage, a drop by one a replica outage.",
                     [(_READY_BY_ZONE, "{{zone}}")], "short", min_value=0,
                     alerts=["MeshZoneDown"]), 16, 8)
    g.add(state_timeline("Replica scrape state", "Whether Prometheus scraped each replica "
                         "(the up series of the target).",
                         [(_TARGETS, "{{zone}}/{{replica}}")], "none", mappings=[_UP],
                         thresholds=steps("red", (1, "green")),
                         alerts=["MeshReplicaDown", "MeshTargetsAbsent"]), 12, 8)
    g.add(state_timeline("Store reachable per replica", "agentmesh_store_up: whether each "
                         "replica's last readiness check reached the store.",
                         [(f"agentmesh_store_up{{{MESH}}}", "{{zone}}/{{replica}}")], "none",
                         mappings=[_UP], thresholds=steps("red", (1, "green"))), 12, 8)
    g.add(timeseries("Scrape time per zone", "How long Prometheus's requests to each zone take"
                     " (scrape_duration_seconds, averaged per zone): made from outside every"
                     " zone like a client's, they show a zone that is slow rather than down"
                     " (lost packets, a sick network) while its health checks still pass.",
                     [(f"avg by (zone) (avg_over_time(scrape_duration_seconds{{{MESH}}}"
                       f"[{RATE}]))", "{{zone}}")], "s", min_value=0,
                     alerts=["MeshZoneSlow"]), 24, 8)


def _shedding(g: Grid) -> None:
    g.row("Load shedding")
    g.add(timeseries("429 responses by zone", "Requests answered 429 (Retry-After) per "
                     "second by zone: the bulkhead shedding load, and clients or agents over "
                     "their rate limits.",
                     [(f'sum by (zone) (rate({_REQUESTS}{{{MESH}, code="429"}}[{RATE}]))'
                       f" or {_NONE_BY_ZONE}", "{{zone}}")], "reqps",
                     stack=True), 8, 8)
    g.add(timeseries("Rejected by a limit", "Requests turned away by a limit, per second "
                     "by zone and reason: concurrency, client_rate, agent_rate (429), "
                     "body_timeout, header_timeout (408), header_too_large (431), "
                     "body_too_large (413).",
                     [(f"sum by (zone, reason) (rate(agentmesh_requests_rejected_total"
                       f"{{{MESH}}}[{RATE}])) or {_NONE_BY_ZONE}", "{{zone}} {{reason}}")], "reqps",
                     stack=True), 8, 8)
    g.add(timeseries("Requests in flight per replica", "Concurrent requests on each replica; "
                     "the concurrency limit applies to this.",
                     [(f"sum by (zone, replica) (agentmesh_http_requests_in_flight{{{MESH}}})",
                       "{{zone}}/{{replica}}")], "short"), 8, 8)


def _breakers(g: Grid) -> None:
    g.row("Circuit breakers")
    g.add(stat("Open circuit breakers", "Breakers currently open, over all replicas and "
               "dependencies.",
               [(f"count(agentmesh_circuit_breaker_state{{{MESH}}} == 2) or vector(0)", "open")],
               "short", thresholds=steps("green", (1, "red")),
               alerts=["MeshCircuitBreakerOpen"]), 6, 8)
    g.add(state_timeline("Circuit breaker state", "State per replica and dependency: closed, "
                         "half-open (probing) or open (failing fast).",
                         [(f"max by (zone, replica, dependency) (agentmesh_circuit_breaker_state"
                           f"{{{MESH}}})", "{{zone}}/{{replica}} {{dependency}}")], "none",
                         mappings=[_BREAKER],
                         thresholds=steps("green", (1, "orange"), (2, "red")),
                         alerts=["MeshCircuitBreakerOpen"]), 18, 8)


def _storage(g: Grid) -> None:
    g.row("Storage")
    g.add(timeseries("Storage latency p99 by operation", "99th percentile storage call "
                     "latency by backend and operation.",
                     [(f"histogram_quantile(0.99, sum by (le, backend, operation) (rate("
                       f"agentmesh_storage_operation_duration_seconds_bucket{{{MESH}}}"
                       f"[{RATE}])))", "{{backend}} {{operation}}")], "s"), 8, 8)
    g.add(timeseries("Storage latency p99 by zone", "99th percentile storage call latency by "
                     "zone: a slow zone points at its network path to the store.",
                     [(f"histogram_quantile(0.99, sum by (le, zone) (rate("
                       f"agentmesh_storage_operation_duration_seconds_bucket{{{MESH}}}"
                       f"[{RATE}])))", "{{zone}}")], "s"), 8, 8)
    g.add(timeseries("Storage errors", "Failed storage calls per second by zone, backend and "
                     "kind (unavailable, timeout).",
                     [(f"sum by (zone, backend, kind) (rate(agentmesh_storage_errors_total"
                       f"{{{MESH}}}[{RATE}])) or 0 * sum by (zone, backend) (rate("
                       f"agentmesh_storage_operation_duration_seconds_count{{{MESH}}}[{RATE}]))",
                       "{{zone}} {{backend}} {{kind}}")], "ops",
                     stack=True), 8, 8)


_P, _E = f'job="{PATRONI_JOB}"', f'job="{ETCD_JOB}"'


def _per_member(title: str, description: str, series: str, job: str,
                states: dict[int, tuple[str, str]], alerts: list[str]) -> Any:
    """A 0/1 series of each data-tier member as named states over time."""
    return state_timeline(title, description,
                          [(f"max by (zone, member) ({series}{{{job}}})", "{{zone}} {{member}}")],
                          "none", mappings=[value_text(states)],
                          thresholds=steps(states[0][1], (1, states[1][1])), alerts=alerts)


def _data_tier(g: Grid) -> None:
    # Patroni's and etcd's own metrics (`--storage patroni`); empty on any other storage.
    g.row("Data tier (Patroni and etcd)")
    g.add(_per_member("PostgreSQL role per member", "patroni_primary of each member: which "
                      "zone holds the primary, and when it moved. A gap is a member that "
                      "Prometheus could not scrape (down, or its zone cut off).",
                      "patroni_primary", _P, {0: ("standby", "blue"), 1: ("primary", "green")},
                      ["MeshDatabaseNoPrimary", "MeshDatabasePrimaryChanged"]), 12, 8)
    g.add(timeseries("Timeline", "The highest PostgreSQL timeline: it grows by one with every "
                     "promotion, so a step is a failover.",
                     [(f"max(patroni_postgres_timeline{{{_P}}})", "timeline")], "short",
                     alerts=["MeshDatabasePrimaryChanged"]), 12, 8)
    g.add(timeseries("Replication lag per standby", "Bytes of WAL each standby has yet to "
                     "receive from the primary. The dashed line is maximum_lag_on_failover: "
                     "a standby beyond it is not promoted.",
                     [(f"max by (job) (patroni_xlog_location{{{_P}}}) - on (job) group_right ()"
                       f" (patroni_xlog_received_location{{{_P}}} and on (instance)"
                       f" patroni_replica{{{_P}}} == 1)", "{{zone}} {{member}}")], "bytes",
                     min_value=0, thresholds=steps("green", (LAG_BYTES, "red")),
                     alerts=["MeshDatabaseReplicationLagHigh"]), 12, 8)
    g.add(_per_member("etcd leader per member", "etcd_server_has_leader of each member: "
                      "without a leader Patroni cannot renew its key, the primary demotes "
                      "itself and no failover can happen.",
                      "etcd_server_has_leader", _E,
                      {0: ("no leader", "red"), 1: ("leader known", "green")},
                      ["MeshEtcdQuorumLost"]), 12, 8)


def _recovery(g: Grid) -> None:
    g.row("Backups and revocation")
    g.add(backup_age_stat(), 6, 6)
    g.add(timeseries("Revocation propagation p99 by channel", "Delay between a revocation "
                     "being committed and a replica enforcing it, by channel. Dashed lines: "
                     "the 1 s goal MeshRevocationLagHigh alerts on, and the 5 s SLO target.",
                     [(f"histogram_quantile(0.99, sum by (le, channel) (rate("
                       f"agentmesh_revocation_propagation_seconds_bucket{{{MESH}}}[{RATE}])))",
                       "{{channel}}")], "s", thresholds=_PROPAGATION,
                     alerts=["MeshRevocationLagHigh", *_SLO_ALERTS]), 9, 6)
    g.add(timeseries("Revocation propagation p99 by zone", "The same delay by the zone of "
                     "the enforcing replica.",
                     [(f"histogram_quantile(0.99, sum by (le, zone) (rate("
                       f"agentmesh_revocation_propagation_seconds_bucket{{{MESH}}}[{RATE}])))",
                       "{{zone}}")], "s", thresholds=_PROPAGATION,
                     alerts=["MeshRevocationLagHigh", *_SLO_ALERTS]), 9, 6)


def build() -> Dashboard:
    g = Grid()
    _availability(g)
    _shedding(g)
    _breakers(g)
    _storage(g)
    _data_tier(g)
    _recovery(g)
    return dashboard(UID, "meshsre / Zones and resilience",
                     "Replicas ready per zone, load shedding, circuit breakers, storage latency, "
                     "the zonal data tier and revocation propagation.", g,
                     variables=mesh_variables(), module="dashboards/zones.py")
