"""Request bodies. Unknown fields are rejected so a typo never passes silently."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "ChallengeRequest",
    "CredentialRequest",
    "DecisionRequest",
    "Registration",
    "RevocationRequest",
    "TrustUpdate",
    "VerifyCredential",
    "VerifyHandshake",
]

Did = Annotated[str, StringConstraints(pattern=r"^did:mesh:[0-9a-f]{32}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Policy = Literal["strict", "standard", "permissive"]
RevocationReason = Literal[
    "key_compromise",
    "superseded",
    "cessation_of_operation",
    "privilege_withdrawn",
    "unspecified",
]


class _Body(BaseModel):
    # Text that holds U+0000 (which PostgreSQL text cannot store) is refused by read_body.
    model_config = ConfigDict(extra="forbid")


class Registration(_Body):
    public_key: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="raw 32-byte Ed25519 public key, standard base64"
    )
    timestamp: int = Field(
        ge=0, le=2**40, description="unix seconds, signed in the proof; max 5 minutes old"
    )
    proof: Token = Field(description="base64 Ed25519 signature over 'public_key:timestamp'")
    name: Name
    sponsor: Annotated[
        str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    ]
    capabilities: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=100
    )
    policy: Policy = "standard"


class TrustUpdate(_Body):
    score: int = Field(ge=0, le=1000)
    reason: Name = "set by admin"


class ChallengeRequest(_Body):
    did: Did


class VerifyHandshake(_Body):
    challenge_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    did: Did
    signature: Token
    credential: Annotated[str, StringConstraints(max_length=4096)] | None = None


class DecisionRequest(_Body):
    did: Did
    tool: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    action: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class CredentialRequest(_Body):
    did: Did
    ttl_seconds: int = Field(default=900, ge=1, le=900)


class VerifyCredential(_Body):
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class RevocationRequest(_Body):
    reason: RevocationReason = "unspecified"
    note: Annotated[str, StringConstraints(max_length=500)] = ""
