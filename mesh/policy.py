"""Policy decisions for tool calls, by the agent's policy mode.

- strict: default deny; allowed only when the agent's capabilities list the tool (``tool`` or
  ``tool:action``) and its trust score is at least 700.
- standard: allowed unless the tool is on the denylist, the agent is over its rate limit, or
  its trust has fallen into the revoked tier (< 300).
- permissive: always allowed; the decision is still counted and logged.

A denial is a violation: the caller lowers the agent's trust score and audits it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["MIN_TRUST", "Decision", "RateLimiter", "decide"]

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


class RateLimiter:
    """Token bucket per agent, per replica (a cluster-wide limit would need Redis)."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self._buckets) > 100_000:  # bound memory: idle agents refill to burst anyway
            self._buckets.clear()
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True


def _listed(tool: str, action: str, entries: Iterable[str]) -> bool:
    names = set(entries)
    return "*" in names or tool in names or f"{tool}:{action}" in names


def decide(
    agent: dict[str, Any], tool: str, action: str, denylist: Iterable[str], limiter: RateLimiter
) -> Decision:
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
    if not limiter.take(agent["did"]):
        return Decision("deny", "standard.rate_limit", "agent is over its rate limit")
    return Decision("allow", "standard.default_allow", "not denied by any rule")
