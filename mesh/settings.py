"""Runtime settings, read from MESH_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESH_", extra="ignore")

    storage_url: str = "sqlite:///mesh.db"
    redis_url: str | None = None
    # The event stream (NATS JetStream): revocations, violations, trust changes, checkpoints.
    nats_url: str | None = None
    event_stream_replicas: int = Field(default=1, ge=1, le=5)
    admin_token: SecretStr | None = None
    # Private keys never enter the store (mesh.keys): a base64 Ed25519 seed, or a file with
    # one (mode 0600). The log key signs audit checkpoints; it must not be the issuer's.
    issuer_key: SecretStr | None = None
    issuer_key_file: str | None = None
    log_key: SecretStr | None = None
    log_key_file: str | None = None
    zone: str = "local"
    replica: str = "0"
    max_inflight: int = Field(default=256, ge=1)
    max_body_bytes: int = 64 * 1024
    storage_timeout_seconds: float = Field(default=2.0, gt=0)
    proof_max_age_seconds: int = 300
    # A signed request or proof dated ahead of the server's clock by more than this is
    # refused: it would otherwise stay replayable for longer than the window.
    future_skew_seconds: int = Field(default=10, ge=0, le=300)
    challenge_ttl_seconds: int = 30
    credential_max_ttl_seconds: int = Field(default=900, le=900)
    # Signed requests per agent, with bursts of as many: cluster-wide through Redis, else
    # per replica. Over it, 429: a rate limit is not a policy denial and costs no trust.
    rate_limit_per_minute: int = Field(default=120, ge=1)
    # Requests per client address (probes and scrapes aside), the same way.
    client_rate_per_second: float = Field(default=300.0, gt=0)
    client_burst: int = Field(default=600, ge=1)
    # Addresses whose X-Forwarded-For names the client (a proxy in front); none by default.
    trusted_proxies: str = ""
    # Slow clients: a request's head and body each have this long to arrive, or 408.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    policy_denylist: tuple[str, ...] = ("shell:exec", "filesystem:delete", "credentials:export")
    violation_penalty: int = 10
    # How long a sidecar may reuse an allowed decision; the event stream cuts it short on a
    # trust change or revocation.
    decision_ttl_seconds: float = Field(default=5.0, ge=0, le=300)
    # How often a replica polls for changes made through others: revocations and the agent
    # cache (a floor; PostgreSQL pushes revocations at once).
    revocation_poll_seconds: float = Field(default=0.1, gt=0)
    audit_check_seconds: float = Field(default=5.0, gt=0)
    log_level: str = "INFO"
    access_log: bool = True

    def in_window(self, timestamp: int, now: float) -> bool:
        """Whether a signed timestamp is acceptable now: at most ``proof_max_age_seconds``
        old, and at most ``future_skew_seconds`` ahead."""
        return -self.future_skew_seconds <= now - timestamp <= self.proof_max_age_seconds
