"""Symptom alerts: what the burn-rate alerts cannot see, or see too late.

A zone or replica going dark, a zone slow rather than down (gray failure), a target vanishing,
a broken audit chain, an audit log no witness has taken a checkpoint of lately, a stale backup,
an open circuit breaker, slow revocations, spikes of rejected handshakes or denied tool calls,
and replayed signed requests.
Zone and replica come from scrape target labels; every metric is from the telemetry contract.
"""

from __future__ import annotations

from typing import Any

from alerts.catalog import BACKUP_FRESHNESS, MESH_JOB

__all__ = ["DASHBOARDS", "READY_RECORD", "mesh_groups"]

Rule = dict[str, Any]

_UP = f'up{{job="{MESH_JOB}"}}'
READY_RECORD = "instance:agentmesh_ready:bool"
# How long a zone is remembered after its last target vanished (pods deleted, not failing).
ZONE_MEMORY = "1h"
REVOCATION_P99_GOAL_SECONDS = 1  # the design goal; the SLO's 5 s has its own burn alerts
SPIKE_SHARE = 0.25  # share of handshakes rejected, or of tool calls denied, that is a spike
SPIKE_MIN_PER_SECOND = 0.1  # below this a few bad clients are noise, not an incident
BREAKER_OPEN = 2  # agentmesh_circuit_breaker_state: 0 closed, 1 half-open, 2 open
# A zone is slow (a gray failure: lost packets, a sick network) when Prometheus's own requests
# to it, made from outside every zone like a client's, take SLOW_FACTOR times those of the
# fastest zone and over SLOW_FLOOR_S, or fail and recover FLAPS times in SLOW_WINDOW (a
# restarted zone flips once or twice, a lossy one over and over).
SLOW_FACTOR = 4
SLOW_FLOOR_S = 0.05  # below this, scrape times of an idle machine differ by jitter alone
FLAPS = 4
SLOW_WINDOW = "2m"
# Clients sign every request anew, so a replay is never a client's honest retry: a few a
# minute are already someone sending captured traffic.
REPLAYS_PER_SECOND = 0.05
# Replicas sign a checkpoint every audit check (5 s by default): minutes without one taken
# mean none signs, or the witness refuses them all (the log lost or changed witnessed entries).
CHECKPOINT_MAX_AGE_SECONDS = 300

# Where each alert's evidence is drawn (dashboard uids of dashboards/).
DASHBOARDS = {
    "MeshZoneDown": "meshsre-zones",
    "MeshZoneSlow": "meshsre-zones",
    "MeshReplicaDown": "meshsre-zones",
    "MeshTargetsAbsent": "meshsre-zones",
    "MeshRevocationLagHigh": "meshsre-zones",
    "MeshCircuitBreakerOpen": "meshsre-zones",
    "MeshDatabaseNoPrimary": "meshsre-zones",
    "MeshDatabasePrimaryChanged": "meshsre-zones",
    "MeshDatabaseReplicationLagHigh": "meshsre-zones",
    "MeshEtcdQuorumLost": "meshsre-zones",
    "MeshAuditChainBroken": "meshsre-mesh-health",
    "MeshAuditCheckpointStale": "meshsre-mesh-health",
    "MeshHandshakeFailureSpike": "meshsre-mesh-health",
    "MeshPolicyViolationSpike": "meshsre-mesh-health",
    "MeshReplaySpike": "meshsre-mesh-health",
    "MeshErrorBudgetExhausted": "meshsre-slos",
}


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> Rule:
    rule: Rule = {"alert": name, "expr": expr.strip() + "\n"}
    if for_ != "0m":
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


def _spike(by: str, bad: str, total: str) -> str:
    rate_bad = f"sum by ({by}) (rate({bad}[10m]))"
    return f"""
(
  {rate_bad}
  /
  (sum by ({by}) (rate({total}[10m])) > 0)
) > {SPIKE_SHARE}
and
{rate_bad} > {SPIKE_MIN_PER_SECOND}
"""


def _zone_slow() -> str:
    duration = f'scrape_duration_seconds{{job="{MESH_JOB}"}}'
    per_zone = f"avg by (zone) (avg_over_time({duration}[{SLOW_WINDOW}]))"
    return f"""
(
  {per_zone}
  > on() group_left()
  ({SLOW_FACTOR} * min({per_zone}))
  and
  {per_zone} > {SLOW_FLOOR_S}
)
or
(
  sum by (zone) (changes({_UP}[{SLOW_WINDOW}])) >= {FLAPS}
  and
  max by (zone) ({_UP}) == 1
)"""


def _records() -> list[Rule]:
    # Ready = scraped and reaching its store. A replica that cannot be scraped has no
    # agentmesh_store_up sample (it went stale), so `or` falls back to its up == 0.
    expr = f"{_UP} * on(instance, job) group_left() agentmesh_store_up\nor\n{_UP}\n"
    return [{"record": READY_RECORD, "expr": expr}]


def _alerts() -> list[Rule]:
    max_age = BACKUP_FRESHNESS.max_age_seconds
    return [
        _alert(
            "MeshZoneDown",
            f"""
max by (zone) ({READY_RECORD}) == 0
or
(
  max by (zone) (max_over_time({_UP}[{ZONE_MEMORY}]))
  unless
  max by (zone) ({_UP})
)""",
            "1m", "page",
            "Every replica of a zone is down.",
            "No replica in zone {{ $labels.zone }} has been ready for a minute (not scraped,"
            " store unreachable, or its targets gone): the zone serves no traffic.",
        ),
        _alert(
            "MeshZoneSlow",
            _zone_slow(),
            "1m", "page",
            "A zone is slow or flapping rather than down.",
            "Prometheus's requests to zone {{ $labels.zone }}, made from outside the zones"
            f" like a client's, took {SLOW_FACTOR}x those of the fastest zone (and over"
            f" {SLOW_FLOOR_S:g}s) or failed intermittently over {SLOW_WINDOW}: a gray failure"
            " (packet loss, a sick network) that health checks and MeshZoneDown miss while"
            " clients wait on it. With MeshZoneDown too, the zone is simply down.",
        ),
        _alert(
            "MeshReplicaDown",
            f"{READY_RECORD} == 0",
            "2m", "ticket",
            "A mesh replica is not ready.",
            "Replica {{ $labels.replica }} in zone {{ $labels.zone }} ({{ $labels.instance }})"
            " has not been ready for 2 minutes: it cannot be scraped or cannot reach its store.",
        ),
        _alert(
            "MeshTargetsAbsent",
            f"absent({_UP})",
            "5m", "page",
            "Prometheus has no mesh replica to scrape.",
            "No scrape target of job {{ $labels.job }} has existed for 5 minutes: service"
            " discovery lost the mesh, or every replica is gone. Every mesh alert is blind.",
        ),
        _alert(
            "MeshRevocationLagHigh",
            f"""
histogram_quantile(0.99,
  sum by (zone, le) (rate(agentmesh_revocation_propagation_seconds_bucket[10m]))
) > {REVOCATION_P99_GOAL_SECONDS}""",
            "10m", "ticket",
            "Credential revocations take too long to reach the replicas.",
            "99% of revocations reached the replicas of zone {{ $labels.zone }} within"
            " {{ $value | humanizeDuration }} over the last 10 minutes (goal: under"
            f" {REVOCATION_P99_GOAL_SECONDS}s); a revoked credential stays usable meanwhile.",
        ),
        _alert(
            "MeshAuditChainBroken",
            "min by (job) (agentmesh_audit_chain_valid) == 0",
            "0m", "page",
            "The audit hash chain failed verification.",
            "A replica of job {{ $labels.job }} found the audit hash chain broken at its last"
            " check: audit entries were altered or lost.",
        ),
        _alert(
            "MeshAuditCheckpointStale",
            "time() - max by (job) (agentmesh_audit_checkpoint_timestamp_seconds)"
            f" > {CHECKPOINT_MAX_AGE_SECONDS}",
            "5m", "page",
            "No audit checkpoint has been witnessed lately.",
            "The newest audit checkpoint a witness took for job {{ $labels.job }} is"
            " {{ $value | humanizeDuration }} old: no replica signs one, or the witness refuses"
            " them because the audit log lost or changed entries it had witnessed.",
        ),
        _alert(
            "MeshBackupStale",
            f"time() - max by (job) ({BACKUP_FRESHNESS.timestamp_metric}) > {max_age}",
            "15m", "ticket",
            "The newest store backup is too old.",
            "The newest successful backup of job {{ $labels.job }} is"
            " {{ $value | humanizeDuration }} old, over the"
            f" {max_age // 3600}h limit (a timestamp of 0 means no backup ever).",
        ),
        _alert(
            "MeshCircuitBreakerOpen",
            f"agentmesh_circuit_breaker_state == {BREAKER_OPEN}",
            "2m", "ticket",
            "A circuit breaker of a mesh replica is open.",
            "The circuit breaker for {{ $labels.dependency }} on replica {{ $labels.replica }}"
            " in zone {{ $labels.zone }} has been open for 2 minutes: calls to it fail fast.",
        ),
        _alert(
            "MeshHandshakeFailureSpike",
            _spike("job", 'agentmesh_handshake_total{result!="success"}',
                   "agentmesh_handshake_total"),
            "10m", "ticket",
            "Many handshake verifications are rejected.",
            "{{ $value | humanizePercentage }} of handshake verifications of job"
            " {{ $labels.job }} were rejected over the last 10 minutes: clients with bad keys,"
            " replays, revoked agents, or clock skew.",
        ),
        _alert(
            "MeshPolicyViolationSpike",
            _spike("policy", "agentmesh_policy_violation_count_total",
                   "agentmesh_tool_call_total"),
            "10m", "ticket",
            "Many tool calls are denied by policy.",
            "{{ $value | humanizePercentage }} of tool calls under policy {{ $labels.policy }}"
            " were denied over the last 10 minutes.",
        ),
        _alert(
            "MeshReplaySpike",
            'sum by (job) (rate(agentmesh_signed_request_total{result="replayed"}[10m]))'
            f" > {REPLAYS_PER_SECOND}",
            "5m", "ticket",
            "Signed requests are being replayed.",
            "Replicas of job {{ $labels.job }} refused {{ $value | humanize }} replayed signed"
            " requests a second over the last 10 minutes: someone is sending captured agent"
            " traffic again. The mesh refuses every replay; find who captured it.",
        ),
        _alert(
            "MeshErrorBudgetExhausted",
            # sloth_window="30d" rides along from Sloth's burn-rate records: not for humans.
            "label_replace(\n"
            "  max without (sloth_window) (slo:period_error_budget_remaining:ratio) <= 0,\n"
            '  "slo", "$1", "sloth_slo", "(.*)"\n'
            ")",
            "15m", "ticket",
            "An SLO has spent its whole error budget.",
            "SLO {{ $labels.slo }} has {{ $value | humanizePercentage }} of its error budget"
            " left for the period: freeze risky changes until it recovers.",
        ),
    ]


def mesh_groups() -> list[dict[str, Any]]:
    return [
        {"name": "agentmesh-recordings", "rules": _records()},
        {"name": "agentmesh-alerts", "rules": _alerts()},
    ]
