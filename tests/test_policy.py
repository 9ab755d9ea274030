from typing import Any

from mesh.policy import RateLimiter, decide

DENY = ("shell:exec",)


def agent(policy: str, trust: int = 500, caps: list[str] | None = None) -> dict[str, Any]:
    return {"did": "did:mesh:" + "0" * 32, "policy": policy, "trust_score": trust,
            "capabilities": caps or []}


def test_strict_denies_below_700_even_for_listed_capabilities() -> None:
    d = decide(agent("strict", 650, ["http"]), "http", "get", DENY, RateLimiter(60))
    assert (d.decision, d.rule) == ("deny", "strict.min_trust")


def test_strict_allows_only_listed_tools_and_actions() -> None:
    a = agent("strict", 800, ["http:get", "search"])
    limiter = RateLimiter(60)
    assert decide(a, "http", "get", DENY, limiter).allowed
    assert decide(a, "search", "anything", DENY, limiter).allowed
    denied = decide(a, "http", "post", DENY, limiter)
    assert (denied.decision, denied.rule) == ("deny", "strict.allowlist")


def test_standard_denies_the_denylist_and_allows_the_rest() -> None:
    limiter = RateLimiter(60)
    assert decide(agent("standard"), "shell", "exec", DENY, limiter).rule == "standard.denylist"
    assert decide(agent("standard"), "http", "get", DENY, limiter).allowed


def test_standard_denies_agents_in_the_revoked_tier() -> None:
    d = decide(agent("standard", 299), "http", "get", DENY, RateLimiter(60))
    assert d.rule == "standard.min_trust"


def test_standard_rate_limits_each_agent_separately() -> None:
    limiter = RateLimiter(per_minute=3)
    a = agent("standard")
    results = [decide(a, "http", "get", DENY, limiter).rule for _ in range(4)]
    assert results == ["standard.default_allow"] * 3 + ["standard.rate_limit"]
    other = {**a, "did": "did:mesh:" + "1" * 32}
    assert decide(other, "http", "get", DENY, limiter).allowed


def test_rate_limiter_refills_over_time() -> None:
    limiter = RateLimiter(per_minute=60)
    assert all(limiter.take("k", now=0.0) for _ in range(60))
    assert not limiter.take("k", now=0.0)
    assert limiter.take("k", now=1.0)


def test_permissive_allows_everything_even_the_denylist() -> None:
    d = decide(agent("permissive", 0), "shell", "exec", DENY, RateLimiter(1))
    assert (d.decision, d.rule) == ("allow", "permissive.allow_all")
