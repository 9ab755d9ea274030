"""The telemetry contract: every metric the mesh exposes, in one place.

The runtime registers its metrics from ``CONTRACT``; alerts, dashboards and the validation
suites reference it, and tests fail when a rule or panel names a metric that is not here.
No metric carries a per-agent label: cardinality stays bounded as the registry grows. Zone
and replica come from scrape target labels, not from the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "CONTRACT",
    "EVENT_RESULTS",
    "HANDSHAKE_RESULTS",
    "LATENCY_BUCKETS",
    "POLICIES",
    "PROPAGATION_CHANNELS",
    "REJECTION_REASONS",
    "ROUTES",
    "SIDECAR_CONTRACT",
    "SIDECAR_OUTCOMES",
    "SIGNED_RESULTS",
    "VERIFICATION_RESULTS",
    "MetricSpec",
    "Metrics",
    "SidecarMetrics",
    "exposed_names",
    "spec",
]

Kind = Literal["counter", "gauge", "histogram", "gaugehistogram"]

# Request and decision latency buckets: 0.005 is the policy-decision SLO threshold (the PRD's
# 5 ms overhead budget), so it must be a bucket boundary exactly.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Revocation propagation: 1 s is our goal and 5 s the PRD's target; both are boundaries.
PROPAGATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STORAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0)
# Trust tiers of the AgentMesh family: <300 revoked, 300 probationary, 500 standard,
# 700 trusted, 900 verified partner.
TRUST_BUCKETS = (299.0, 499.0, 699.0, 899.0, 1000.0)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def samples(self) -> tuple[str, ...]:
        """Sample names as they appear in the exposition and in PromQL."""
        if self.kind == "counter":
            return (f"{self.name}_total",)
        if self.kind == "histogram":
            return tuple(f"{self.name}_{s}" for s in ("bucket", "sum", "count"))
        if self.kind == "gaugehistogram":
            return tuple(f"{self.name}_{s}" for s in ("bucket", "gsum", "gcount"))
        return (self.name,)


CONTRACT: tuple[MetricSpec, ...] = (
    MetricSpec(
        "agentmesh_api_request_duration_seconds",
        "histogram",
        "HTTP request duration by route template, method and status code.",
        ("route", "method", "code"),
        LATENCY_BUCKETS,
    ),
    MetricSpec(
        "agentmesh_http_requests_in_flight",
        "gauge",
        "Requests being served now (the concurrency limit applies to this).",
    ),
    MetricSpec(
        "agentmesh_requests_rejected",
        "counter",
        "Requests turned away by a limit, by reason (concurrency, body_too_large,"
        " body_timeout, header_timeout, header_too_large, client_rate, agent_rate).",
        ("reason",),
    ),
    MetricSpec(
        "agentmesh_signed_request",
        "counter",
        "Agent-signed requests by result: accepted, or why not (replayed, expired, bad_signature,"
        " unknown_agent, invalid, unchecked when the replay store was unreachable).",
        ("result",),
    ),
    MetricSpec(
        "agentmesh_handshake",
        "counter",
        "Handshake verifications by result (success or the rejection reason).",
        ("result",),
    ),
    MetricSpec(
        "agentmesh_policy_decision_duration_seconds",
        "histogram",
        "Time to decide a tool call inside the server, registry lookup included.",
        ("policy",),
        LATENCY_BUCKETS,
    ),
    MetricSpec(
        "agentmesh_tool_call",
        "counter",
        "Policy decisions on tool calls, by policy and decision (allow, deny).",
        ("policy", "decision"),
    ),
    MetricSpec(
        "agentmesh_policy_violation_count",
        "counter",
        "Denied tool calls (violations), by policy and the rule that denied them.",
        ("policy", "rule"),
    ),
    MetricSpec(
        "agentmesh_trust_score",
        "gaugehistogram",
        "Trust scores of registered agents as a distribution over the trust tiers.",
        (),
        TRUST_BUCKETS,
    ),
    MetricSpec(
        "agentmesh_registry_size",
        "gauge",
        "Registered agents in the shared store.",
    ),
    MetricSpec(
        "agentmesh_agent_cache",
        "counter",
        "Agent record lookups on the governance path, by result (hit, miss).",
        ("result",),
    ),
    MetricSpec(
        "agentmesh_audit_log",
        "counter",
        "Audit entries appended by this replica, by action.",
        ("action",),
    ),
    MetricSpec(
        "agentmesh_audit_chain_valid",
        "gauge",
        "1 when the audit chain verified end to end on the last check, 0 when it is broken,"
        " NaN until the replica's first check.",
    ),
    MetricSpec(
        "agentmesh_audit_chain_length",
        "gauge",
        "Entries in the audit chain at the last check.",
    ),
    MetricSpec(
        "agentmesh_audit_checkpoint_timestamp_seconds",
        "gauge",
        "When the newest audit checkpoint this replica signed was taken by the witness (unix s).",
    ),
    MetricSpec(
        "agentmesh_audit_checkpoint_refused",
        "counter",
        "Checkpoints the witness refused: the log lost or changed entries it had witnessed.",
    ),
    MetricSpec(
        "agentmesh_credential_issued",
        "counter",
        "Credentials issued by this replica.",
    ),
    MetricSpec(
        "agentmesh_credential_revoked",
        "counter",
        "Credentials revoked through this replica, by reason.",
        ("reason",),
    ),
    MetricSpec(
        "agentmesh_credential_verification",
        "counter",
        "Credential verifications by result (valid or the rejection reason).",
        ("result",),
    ),
    MetricSpec(
        "agentmesh_revocation_propagation_seconds",
        "histogram",
        "Delay between a revocation being committed and this replica enforcing it, by channel.",
        ("channel",),
        PROPAGATION_BUCKETS,
    ),
    MetricSpec(
        "agentmesh_event_published",
        "counter",
        "Events offered to the JetStream event stream, by kind and result (ok: stored;"
        " retried: a failed attempt, sent again; dropped: the queue overflowed while away).",
        ("kind", "result"),
    ),
    MetricSpec(
        "agentmesh_event_stream_up",
        "gauge",
        "1 while this replica is connected to the event stream (NATS JetStream), else 0.",
    ),
    MetricSpec(
        "agentmesh_storage_operation_duration_seconds",
        "histogram",
        "Storage call latency by backend and operation.",
        ("backend", "operation"),
        STORAGE_BUCKETS,
    ),
    MetricSpec(
        "agentmesh_storage_errors",
        "counter",
        "Failed storage calls by backend, operation and kind (unavailable, timeout, retried,"
        " breaker_open).",
        ("backend", "operation", "kind"),
    ),
    MetricSpec(
        "agentmesh_store_up",
        "gauge",
        "1 when the last readiness check reached the store, else 0.",
    ),
    MetricSpec(
        "agentmesh_circuit_breaker_state",
        "gauge",
        "Circuit breaker state by dependency: 0 closed, 1 half-open, 2 open.",
        ("dependency",),
    ),
    MetricSpec(
        "agentmesh_backup_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the newest successful backup recorded in the store (0 when none).",
    ),
    MetricSpec(
        "agentmesh_build_info",
        "gauge",
        "Always 1; labels carry the version, Python version and storage backend.",
        ("version", "python", "backend"),
    ),
    # The standard name: restarts show as changes, and a scraper behind a load balancer can
    # tell whether two scrapes reached the same process.
    MetricSpec(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    ),
)

# Known label values, for rules, dashboards and tests (route is the route template).
ROUTES = (
    "/v1/agents",
    "/v1/agents/{did}",
    "/v1/agents/{did}/trust",
    "/v1/handshakes/challenge",
    "/v1/handshakes/verify",
    "/v1/policy/decide",
    "/v1/credentials",
    "/v1/credentials/verify",
    "/v1/credentials/{jti}/revoke",
    "/v1/audit",
    "/v1/audit/verify",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/openapi.json",
    "unmatched",
)
HANDSHAKE_RESULTS = (
    "success",
    "bad_signature",
    "expired",
    "replayed",
    "unknown_challenge",
    "unknown_agent",
    "low_trust",
    "revoked",
)
VERIFICATION_RESULTS = (
    "valid",
    "revoked",
    "expired",
    "bad_signature",
    "malformed",
    "lifetime_exceeded",
    "unknown_subject",
)
SIGNED_RESULTS = (
    "accepted",
    "replayed",
    "expired",
    "bad_signature",
    "unknown_agent",
    "invalid",
    "unchecked",
)
REJECTION_REASONS = (
    "concurrency",
    "body_too_large",
    "body_timeout",
    "header_timeout",
    "header_too_large",
    "client_rate",
    "agent_rate",
)
PROPAGATION_CHANNELS = ("poll", "postgres", "redis")
EVENT_RESULTS = ("ok", "retried", "dropped")
POLICIES = ("strict", "standard", "permissive")

_BY_NAME = {m.name: m for m in CONTRACT}


def spec(name: str) -> MetricSpec:
    return _BY_NAME[name]


def exposed_names() -> frozenset[str]:
    """Every sample name the mesh exposes, as PromQL would name it."""
    return frozenset(s for m in CONTRACT for s in m.samples)


def _make(m: MetricSpec, registry: CollectorRegistry) -> object:
    kwargs = {"labelnames": m.labels, "registry": registry}
    if m.kind == "counter":
        return Counter(m.name, m.help, **kwargs)  # type: ignore[arg-type]
    if m.kind == "gauge":
        return Gauge(m.name, m.help, **kwargs)  # type: ignore[arg-type]
    return Histogram(m.name, m.help, buckets=m.buckets, **kwargs)  # type: ignore[arg-type]


class Metrics:
    """The live metric objects of one mesh process, registered from ``CONTRACT``.

    ``agentmesh_trust_score``, ``agentmesh_registry_size`` and the backup timestamp are read
    from the store at scrape time by a collector in ``mesh.stats``; they are not created here.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        def make(name: str) -> object:
            return _make(_BY_NAME[name], registry)

        self.request_duration: Histogram = make("agentmesh_api_request_duration_seconds")  # type: ignore[assignment]
        self.in_flight: Gauge = make("agentmesh_http_requests_in_flight")  # type: ignore[assignment]
        self.rejected: Counter = make("agentmesh_requests_rejected")  # type: ignore[assignment]
        self.signed_requests: Counter = make("agentmesh_signed_request")  # type: ignore[assignment]
        self.handshakes: Counter = make("agentmesh_handshake")  # type: ignore[assignment]
        self.decision_duration: Histogram = make("agentmesh_policy_decision_duration_seconds")  # type: ignore[assignment]
        self.tool_calls: Counter = make("agentmesh_tool_call")  # type: ignore[assignment]
        self.violations: Counter = make("agentmesh_policy_violation_count")  # type: ignore[assignment]
        self.agent_cache: Counter = make("agentmesh_agent_cache")  # type: ignore[assignment]
        self.audit_appends: Counter = make("agentmesh_audit_log")  # type: ignore[assignment]
        self.chain_valid: Gauge = make("agentmesh_audit_chain_valid")  # type: ignore[assignment]
        self.chain_length: Gauge = make("agentmesh_audit_chain_length")  # type: ignore[assignment]
        self.checkpoint_time: Gauge = make("agentmesh_audit_checkpoint_timestamp_seconds")  # type: ignore[assignment]
        self.checkpoint_refused: Counter = make("agentmesh_audit_checkpoint_refused")  # type: ignore[assignment]
        self.issued: Counter = make("agentmesh_credential_issued")  # type: ignore[assignment]
        self.revoked: Counter = make("agentmesh_credential_revoked")  # type: ignore[assignment]
        self.verifications: Counter = make("agentmesh_credential_verification")  # type: ignore[assignment]
        self.propagation: Histogram = make("agentmesh_revocation_propagation_seconds")  # type: ignore[assignment]
        self.events_published: Counter = make("agentmesh_event_published")  # type: ignore[assignment]
        self.event_stream_up: Gauge = make("agentmesh_event_stream_up")  # type: ignore[assignment]
        self.storage_duration: Histogram = make("agentmesh_storage_operation_duration_seconds")  # type: ignore[assignment]
        self.storage_errors: Counter = make("agentmesh_storage_errors")  # type: ignore[assignment]
        self.store_up: Gauge = make("agentmesh_store_up")  # type: ignore[assignment]
        self.breaker_state: Gauge = make("agentmesh_circuit_breaker_state")  # type: ignore[assignment]
        self.build_info: Gauge = make("agentmesh_build_info")  # type: ignore[assignment]
        self.start_time: Gauge = make("process_start_time_seconds")  # type: ignore[assignment]
        self._appended: dict[str, Any] = {}

    def appended(self, action: str) -> None:
        """Counts an audit entry by action; the labelled child is kept, since labels() costs
        a lock and a lookup every call."""
        child = self._appended.get(action)
        if child is None:
            child = self._appended[action] = self.audit_appends.labels(action)
        child.inc()


# -- The governance sidecar (``meshsre sidecar``): a section of its own, since a sidecar
# exposes these and not the mesh's. Its job is "sidecar"; the tool-call counter is the mesh's
# own spec, so one query reads both (by job).

# The overhead goal of a governed tool call is 2 ms at p99: a bucket boundary, like 5 ms above.
SIDECAR_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# How a tool call through a sidecar ended: forwarded on a cached decision, on one the mesh
# just made, on a stale one while the mesh is unreachable (grace); or refused: denied by
# policy, the mesh unreachable past the grace period (fail closed), the agent revoked; or the
# tool's upstream failed or timed out.
SIDECAR_OUTCOMES = (
    "cached",
    "decided",
    "stale",
    "denied",
    "unreachable",
    "revoked",
    "upstream_error",
    "upstream_timeout",
)
SIDECAR_CONTRACT: tuple[MetricSpec, ...] = (
    _BY_NAME["agentmesh_tool_call"],
    MetricSpec(
        "agentmesh_sidecar_request_duration_seconds",
        "histogram",
        "Tool calls through the sidecar, from the agent's request to the last byte of the"
        " answer, by outcome.",
        ("outcome",),
        SIDECAR_BUCKETS,
    ),
    MetricSpec(
        "agentmesh_sidecar_governance_duration_seconds",
        "histogram",
        "Time the sidecar spent governing a tool call before forwarding or refusing it"
        " (decision, cache, credential), by outcome.",
        ("outcome",),
        SIDECAR_BUCKETS,
    ),
    MetricSpec(
        "agentmesh_sidecar_mesh_reachable",
        "gauge",
        "1 when the sidecar's last call to the mesh succeeded, else 0.",
    ),
    MetricSpec(
        "agentmesh_sidecar_fail_closed",
        "gauge",
        "1 while the mesh has been unreachable longer than the grace period: every tool call"
        " is refused.",
    ),
    MetricSpec(
        "agentmesh_sidecar_event_stream_up",
        "gauge",
        "1 while the sidecar follows the event stream; 0 while it falls back to polling the"
        " mesh (decisions are then reused for one poll interval at most).",
    ),
    MetricSpec(
        "agentmesh_sidecar_events_received",
        "counter",
        "Events of this sidecar's agent received from the event stream, by kind.",
        ("kind",),
    ),
    MetricSpec(
        "agentmesh_sidecar_revocation_enforcement_seconds",
        "histogram",
        "Delay from a revocation's commit in the mesh to this sidecar dropping the credential"
        " and cached decisions, by channel (jetstream, poll).",
        ("channel",),
        PROPAGATION_BUCKETS,
    ),
    MetricSpec(
        "agentmesh_sidecar_cached_decisions",
        "gauge",
        "Allowed decisions held in the sidecar's cache.",
    ),
)
_SIDECAR_BY_NAME = {m.name: m for m in SIDECAR_CONTRACT}


class SidecarMetrics:
    """The live metric objects of one sidecar, registered from ``SIDECAR_CONTRACT``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        def make(name: str) -> object:
            return _make(_SIDECAR_BY_NAME[name], registry)

        self.tool_calls: Counter = make("agentmesh_tool_call")  # type: ignore[assignment]
        self.duration: Histogram = make("agentmesh_sidecar_request_duration_seconds")  # type: ignore[assignment]
        self.governance: Histogram = make("agentmesh_sidecar_governance_duration_seconds")  # type: ignore[assignment]
        self.mesh_reachable: Gauge = make("agentmesh_sidecar_mesh_reachable")  # type: ignore[assignment]
        self.fail_closed: Gauge = make("agentmesh_sidecar_fail_closed")  # type: ignore[assignment]
        self.stream_up: Gauge = make("agentmesh_sidecar_event_stream_up")  # type: ignore[assignment]
        self.events: Counter = make("agentmesh_sidecar_events_received")  # type: ignore[assignment]
        self.enforcement: Histogram = make("agentmesh_sidecar_revocation_enforcement_seconds")  # type: ignore[assignment]
        self.cached: Gauge = make("agentmesh_sidecar_cached_decisions")  # type: ignore[assignment]
