"""Settings of one sidecar, from ``MESH_SIDECAR_*`` variables and `meshsre sidecar` options."""

from __future__ import annotations

import base64
import binascii
import re
import socket
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from meshsre.identity import AgentKey

__all__ = ["SidecarSettings", "parse_tools"]

_TOOL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def parse_tools(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``name=http://host:port`` pairs as a mapping; ValueError naming the bad one."""
    tools: dict[str, str] = {}
    for pair in pairs:
        name, sep, url = pair.partition("=")
        if not sep or not _TOOL.match(name):
            raise ValueError(f"{pair!r}: use NAME=URL, NAME in lowercase letters, digits, - and _")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{pair!r}: the tool's URL must start with http:// or https://")
        tools[name] = url.rstrip("/")
    return tools


class SidecarSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESH_SIDECAR_", extra="ignore")

    mesh_url: str
    tools: dict[str, str] = Field(default_factory=dict)  # name -> upstream base URL
    nats_url: str | None = None
    # The agent's Ed25519 seed (base64), or a file holding it: the key never leaves the pod.
    agent_key: SecretStr | None = None
    key_file: Path | None = None
    zone: str = "local"
    instance: str = Field(default_factory=socket.gethostname)
    # Registration, when the sidecar registers its agent itself (409: already registered).
    register_name: str | None = None
    register_sponsor: str = "ops@example.com"
    register_capabilities: tuple[str, ...] = ()
    register_policy: str = "standard"
    # The mesh unreachable this long: every call is refused (fail closed). Until then, calls
    # with a decision in the cache are still forwarded.
    grace_seconds: float = Field(default=30.0, ge=0, le=3600)
    # With the event stream down, the credential is checked with the mesh this often and no
    # decision is reused.
    fallback_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    decision_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    connect_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    # Longest silence from a tool's upstream, per read: streams may run longer than this.
    upstream_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    credential_ttl_seconds: int = Field(default=900, ge=60, le=900)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    max_connections: int = Field(default=256, ge=1)

    @field_validator("mesh_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def key(self) -> AgentKey:
        """The agent's key, from MESH_SIDECAR_AGENT_KEY or the key file; ValueError saying
        which is missing or wrong."""
        if self.agent_key is not None:
            text, where = self.agent_key.get_secret_value(), "MESH_SIDECAR_AGENT_KEY"
        elif self.key_file is not None:
            try:
                text, where = self.key_file.read_text().strip(), str(self.key_file)
            except OSError as exc:
                raise ValueError(f"cannot read the key file {self.key_file}: {exc}") from exc
        else:
            raise ValueError("no agent key: give --key-file or MESH_SIDECAR_AGENT_KEY")
        try:
            seed = base64.b64decode(text, validate=True)
        except binascii.Error:
            seed = b""
        if len(seed) != 32:
            raise ValueError(f"{where}: the agent key must be a base64 Ed25519 seed of 32 bytes")
        return AgentKey.from_seed(seed)
