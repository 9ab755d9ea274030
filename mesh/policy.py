"""Policy decisions for tool calls, by the agent's policy mode.

- strict: default deny; allowed only when the agent's capabilities list the tool (``tool`` or
  ``tool:action``) and its trust score is at least 700.
- standard: allowed unless the tool is on the denylist or the agent's trust has fallen into
  the revoked tier (< 300).
- permissive: always allowed; the decision is still counted and logged.

A denial is a violation: the caller lowers the agent's trust score and audits it. Rate limits
are not policy (``mesh.limits``): an agent over its limit gets 429 and loses no trust.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["MIN_TRUST", "Decision", "decide"]

# Minimum trust to handshake and (for strict) to be allowed anything; from the trust tiers.
MIN_TRUST = {"strict": 700, "standard": 300, "permissive": 0}


@dataclass(frozen=True)
class Decision:
    decision: str  # allow | deny
    rule: str
    reason: str

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"


def _listed(tool: str, action: str, entries: Iterable[str]) -> bool:
    names = set(entries)
    return "*" in names or tool in names or f"{tool}:{action}" in names


def decide(agent: dict[str, Any], tool: str, action: str, denylist: Iterable[str]) -> Decision:
    policy, trust = agent["policy"], agent["trust_score"]
    if policy == "permissive":
        return Decision("allow", "permissive.allow_all", "permissive policy allows and logs")
    if policy == "strict":
        if trust < MIN_TRUST["strict"]:
            return Decision(
                "deny", "strict.min_trust", f"trust score {trust} is below the strict minimum 700"
            )
        if not _listed(tool, action, agent["capabilities"]):
            return Decision(
                "deny", "strict.allowlist", f"{tool}:{action} is not in the agent's capabilities"
            )
        return Decision("allow", "strict.allowlist", f"{tool}:{action} is an allowed capability")
    if trust < MIN_TRUST["standard"]:
        return Decision(
            "deny", "standard.min_trust", f"trust score {trust} is in the revoked tier (< 300)"
        )
    if _listed(tool, action, denylist):
        return Decision("deny", "standard.denylist", f"{tool}:{action} is on the denylist")
    return Decision("allow", "standard.default_allow", "not denied by any rule")
