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
    issuer_key: SecretStr | None = Field(
        default=None, description="base64 Ed25519 seed; else generated once and kept in the store"
    )
    zone: str = "local"
    replica: str = "0"
    max_inflight: int = Field(default=256, ge=1)
    max_body_bytes: int = 64 * 1024
    storage_timeout_seconds: float = Field(default=2.0, gt=0)
    proof_max_age_seconds: int = 300
    challenge_ttl_seconds: int = 30
    credential_max_ttl_seconds: int = Field(default=900, le=900)
    rate_limit_per_minute: int = Field(default=120, ge=1)
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
