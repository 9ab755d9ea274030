from typing import Any

from mesh.policy import decide

DENY = ("shell:exec",)


def agent(policy: str, trust: int = 500, caps: list[str] | None = None) -> dict[str, Any]:
    return {"did": "did:mesh:" + "0" * 32, "policy": policy, "trust_score": trust,
            "capabilities": caps or []}


def test_strict_denies_below_700_even_for_listed_capabilities() -> None:
    d = decide(agent("strict", 650, ["http"]), "http", "get", DENY)
    assert (d.decision, d.rule) == ("deny", "strict.min_trust")


def test_strict_allows_only_listed_tools_and_actions() -> None:
    a = agent("strict", 800, ["http:get", "search"])
    assert decide(a, "http", "get", DENY).allowed
    assert decide(a, "search", "anything", DENY).allowed
    denied = decide(a, "http", "post", DENY)
    assert (denied.decision, denied.rule) == ("deny", "strict.allowlist")


def test_standard_denies_the_denylist_and_allows_the_rest() -> None:
    assert decide(agent("standard"), "shell", "exec", DENY).rule == "standard.denylist"
    assert decide(agent("standard"), "http", "get", DENY).allowed


def test_standard_denies_agents_in_the_revoked_tier() -> None:
    d = decide(agent("standard", 299), "http", "get", DENY)
    assert d.rule == "standard.min_trust"


def test_no_rule_of_any_policy_is_a_rate_limit() -> None:
    # Rate limits are fairness, answered with 429 before any decision (mesh.limits): an
    # agent's own burst must never count as a violation and cost it trust.
    a = agent("standard")
    assert all(decide(a, "http", "get", DENY).rule == "standard.default_allow"
               for _ in range(1000))


def test_permissive_allows_everything_even_the_denylist() -> None:
    d = decide(agent("permissive", 0), "shell", "exec", DENY)
    assert (d.decision, d.rule) == ("allow", "permissive.allow_all")
