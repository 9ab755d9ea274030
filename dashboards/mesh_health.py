"""Mesh Health: what the governance plane is doing (registry, trust, handshakes, policy,
credentials, audit)."""

from __future__ import annotations

from grafanalib.core import Dashboard

from dashboards.layout import Grid, dashboard
from dashboards.panels import (
    MESH,
    RATE,
    bar_gauge,
    mesh_variables,
    stat,
    steps,
    timeseries,
    value_text,
)

__all__ = ["UID", "build"]

UID = "meshsre-mesh-health"


def _registry(g: Grid) -> None:
    g.row("Registry and trust")
    # Registry size and the trust distribution are read from the shared store, so every
    # replica reports the same value: take max, never sum.
    g.add(stat("Registered agents", "Agents in the shared registry (max over replicas, since "
               "each reads the same store).",
               [(f"max(agentmesh_registry_size{{{MESH}}})", "agents")], "short"), 4, 8)
    g.add(timeseries("Registry size", "Registered agents over time.",
                     [(f"max(agentmesh_registry_size{{{MESH}}})", "agents")], "short"), 10, 8)
    g.add(bar_gauge(
        "Trust score distribution",
        "Agents per trust tier, by upper bound of the tier: <=299 revoked, <=499 probationary, "
        "<=699 standard, <=899 trusted, <=1000 verified partner. Cumulative buckets are "
        "de-accumulated by the heatmap format.",
        [(f"max by (le) (agentmesh_trust_score_bucket{{{MESH}}})", "{{le}}")], "short",
        fmt="heatmap"), 10, 8)


def _handshakes(g: Grid) -> None:
    g.row("Handshakes")
    g.add(timeseries(
        "Handshakes by result", "Handshake verifications per second, by result (success or "
        "the rejection reason).",
        [(f"sum by (result) (rate(agentmesh_handshake_total{{{MESH}}}[{RATE}]))", "{{result}}")],
        "ops", stack=True, alerts=["MeshHandshakeFailureSpike"]), 16, 8)
    g.add(stat(
        "Handshake success ratio", "Successful handshakes over all handshakes in the window; "
        "empty when there were none. MeshHandshakeFailureSpike fires above 25% rejected.",
        [(f'sum(rate(agentmesh_handshake_total{{{MESH}, result="success"}}[{RATE}])) / '
          f"(sum(rate(agentmesh_handshake_total{{{MESH}}}[{RATE}])) > 0)", "success")],
        "percentunit", thresholds=steps("red", (0.75, "orange"), (0.99, "green")),
        alerts=["MeshHandshakeFailureSpike"]), 8, 8)


def _signed_requests(g: Grid) -> None:
    g.row("Signed requests")
    g.add(timeseries(
        "Signed requests by result", "Agent-signed requests per second by result: accepted, "
        "or why not (replayed, expired, bad_signature, unknown_agent, invalid, unchecked when "
        "the replay store was unreachable). MeshReplaySpike fires above 0.05 replays a second.",
        [(f"sum by (result) (rate(agentmesh_signed_request_total{{{MESH}}}[{RATE}]))",
          "{{result}}")], "ops", stack=True, alerts=["MeshReplaySpike"]), 24, 8)


def _policy(g: Grid) -> None:
    g.row("Policy")
    g.add(timeseries(
        "Policy decisions", "Tool-call decisions per second by policy and decision.",
        [(f"sum by (policy, decision) (rate(agentmesh_tool_call_total{{{MESH}}}[{RATE}]))",
          "{{policy}} {{decision}}")], "ops", stack=True), 8, 8)
    g.add(timeseries(
        "Policy violations by rule", "Denied tool calls per second by policy and the rule "
        "that denied them. Violations lower the agent's trust score.",
        [(f"sum by (policy, rule) (rate(agentmesh_policy_violation_count_total{{{MESH}}}"
          f"[{RATE}]))", "{{policy}}: {{rule}}")], "ops", stack=True,
        alerts=["MeshPolicyViolationSpike"]), 8, 8)
    g.add(timeseries(
        "Policy decision latency p99", "99th percentile of the in-server decision time by "
        "policy; the dashed line is the 5 ms overhead budget of the decision-latency SLO.",
        [(f"histogram_quantile(0.99, sum by (le, policy) (rate("
          f"agentmesh_policy_decision_duration_seconds_bucket{{{MESH}}}[{RATE}])))",
          "{{policy}}")], "s", thresholds=steps("green", (0.005, "red"))), 8, 8)
    g.add(timeseries(
        "Agent cache hit ratio", "Share of agent lookups on the governance path (signed "
        "requests, decisions, handshakes) served from the replica's cache, by replica. A low "
        "ratio sends those lookups to the store: see the storage latency panels.",
        [(f'sum by (instance) (rate(agentmesh_agent_cache_total{{{MESH}, result="hit"}}'
          f"[{RATE}])) / (sum by (instance) (rate(agentmesh_agent_cache_total{{{MESH}}}"
          f"[{RATE}])) > 0)", "{{instance}}")], "percentunit"), 8, 8)


def _credentials_and_audit(g: Grid) -> None:
    g.row("Credentials and audit")
    g.add(timeseries(
        "Credentials issued and revoked", "Credentials issued per second, and revocations per "
        "second by reason.",
        [(f"sum(rate(agentmesh_credential_issued_total{{{MESH}}}[{RATE}]))", "issued"),
         (f"sum by (reason) (rate(agentmesh_credential_revoked_total{{{MESH}}}[{RATE}]))",
          "revoked: {{reason}}")], "ops"), 8, 8)
    g.add(timeseries(
        "Credential verifications by result", "Credential verifications per second, by "
        "result (valid or the rejection reason).",
        [(f"sum by (result) (rate(agentmesh_credential_verification_total{{{MESH}}}"
          f"[{RATE}]))", "{{result}}")], "ops", stack=True), 8, 8)
    g.add(timeseries(
        "Audit appends by action", "Audit entries appended per second, by action.",
        [(f"sum by (action) (rate(agentmesh_audit_log_total{{{MESH}}}[{RATE}]))",
          "{{action}}")], "ops", stack=True), 8, 8)
    g.add(stat(
        "Audit chain", "Whether the hash-chained audit log verified end to end on the last "
        "check (worst replica).",
        [(f"min(agentmesh_audit_chain_valid{{{MESH}}})", "chain")], "none",
        thresholds=steps("red", (1, "green")),
        mappings=[value_text({0: ("broken", "red"), 1: ("valid", "green")})],
        alerts=["MeshAuditChainBroken"]), 6, 6)
    g.add(stat(
        "Audit chain length", "Entries in the audit chain at the last check.",
        [(f"max(agentmesh_audit_chain_length{{{MESH}}})", "entries")], "short"), 6, 6)
    g.add(timeseries(
        "Events published", "Events offered to the JetStream event stream per second, by kind "
        "and result: ok (stored), retried (a failed attempt), dropped (the queue overflowed "
        "while NATS was away). Sidecars learn revocations from these.",
        [(f"sum by (kind, result) (rate(agentmesh_event_published_total{{{MESH}}}[{RATE}]))",
          "{{kind}} {{result}}")], "ops", stack=True), 8, 6)
    g.add(stat(
        "Replicas on the event stream", "Replicas connected to NATS JetStream now, of all that "
        "report; fewer means revocations reach sidecars late (they poll instead).",
        [(f"sum(agentmesh_event_stream_up{{{MESH}}})", "connected"),
         (f"count(agentmesh_event_stream_up{{{MESH}}})", "replicas")], "short"), 4, 6)
    g.add(stat(
        "Mesh build", "Replicas by version and storage backend, from agentmesh_build_info.",
        [(f"count by (version, backend) (agentmesh_build_info{{{MESH}}})",
          "{{version}} on {{backend}}")], "short"), 6, 6)
    g.add(stat(
        "Shortest replica uptime", "Time since the youngest mesh process started, from "
        "process_start_time_seconds: a crash loop keeps it low.",
        [(f"min(time() - process_start_time_seconds{{{MESH}}})", "uptime")], "s",
        thresholds=steps("orange", (300, "green"))), 6, 6)
    g.add(stat(
        "Audit checkpoint age", "Time since the newest signed checkpoint of the audit log that "
        "a witness took (any replica). It grows when no replica signs, or the witness refuses "
        "every checkpoint because the log lost or changed witnessed entries.",
        [(f"time() - max(agentmesh_audit_checkpoint_timestamp_seconds{{{MESH}}})", "age")], "s",
        thresholds=steps("green", (60, "orange"), (300, "red")),
        alerts=["MeshAuditCheckpointStale"]), 6, 6)
    g.add(stat(
        "Audit checkpoints refused", "Checkpoints the witness refuses per second: the log no "
        "longer extends what was witnessed (truncated or rewritten). See the audit checkpoint "
        "runbook.",
        [(f"sum(rate(agentmesh_audit_checkpoint_refused_total{{{MESH}}}[{RATE}]))", "refused")],
        "ops", thresholds=steps("green", (0.001, "red"))), 6, 6)


def build() -> Dashboard:
    g = Grid()
    _registry(g)
    _handshakes(g)
    _signed_requests(g)
    _policy(g)
    _credentials_and_audit(g)
    return dashboard(UID, "meshsre / Mesh health",
                     "Registry, trust, handshakes, policy decisions, credentials and audit.", g,
                     variables=mesh_variables(), module="dashboards/mesh_health.py")
