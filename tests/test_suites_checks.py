"""The suites' check functions on hand-written API answers and expositions: the failure paths
that a healthy live target never shows."""

from __future__ import annotations

import pytest

from suites import exposition, promchecks
from suites.prom import duration_seconds


def test_a_prometheus_missing_the_generated_groups_names_each_of_them() -> None:
    expected = promchecks.expected_groups()
    problems = promchecks.rule_problems([], expected)
    assert len(problems) == len(expected)
    assert "rule group agentmesh-alerts is not loaded" in problems


def test_a_rule_that_fails_to_evaluate_is_reported_with_its_error() -> None:
    expected = promchecks.expected_groups()
    loaded = [{"name": name, "rules": [
        {"name": r.get("record") or r["alert"], "health": "ok"} for r in rules]}
        for name, rules in expected.items()]
    assert promchecks.rule_problems(loaded, expected) == []
    loaded[0]["rules"][0].update(health="err", lastError="many-to-many matching not allowed")
    (problem,) = promchecks.rule_problems(loaded, expected)
    assert problem.endswith("health err: many-to-many matching not allowed")


def test_stale_rule_files_are_told_apart_from_missing_ones() -> None:
    expected = promchecks.expected_groups()
    loaded = [{"name": name, "rules": []} for name in expected]
    assert all("stale rule files" in p for p in promchecks.rule_problems(loaded, expected))


def test_a_prometheus_that_does_not_scrape_the_mesh_is_told_so() -> None:
    targets = [{"labels": {"job": "prometheus", "instance": "x"}, "health": "up"}]
    (problem,) = promchecks.target_problems(targets)
    assert problem.startswith("no target of job 'mesh'")


def test_no_traffic_is_no_burn() -> None:
    assert promchecks.burn_rate_problems(lambda expr: []) == []


def test_a_burn_over_one_window_only_does_not_page() -> None:
    def query(expr: str) -> list[dict[str, object]]:
        ratio = "0.5" if "ratio_rate5m" in expr or "ratio_rate30m" in expr else "0"
        return [{"value": [0, ratio]}]

    assert promchecks.burn_rate_problems(query) == []


@pytest.mark.parametrize(("text", "seconds"), [("15s", 15), ("1m30s", 90), ("500ms", 0.5),
                                               ("2h", 7200)])
def test_prometheus_durations_are_read_in_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


def test_a_malformed_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        duration_seconds("15 s")


EXPOSITION = """\
# HELP agentmesh_policy_decision_duration_seconds Decision time.
# TYPE agentmesh_policy_decision_duration_seconds histogram
agentmesh_policy_decision_duration_seconds_bucket{policy="strict",le="0.01"} 1
agentmesh_policy_decision_duration_seconds_bucket{policy="strict",le="+Inf"} 1
agentmesh_policy_decision_duration_seconds_count{policy="strict"} 1
agentmesh_policy_decision_duration_seconds_sum{policy="strict"} 0.002
# HELP agentmesh_tool_call_total Decisions.
# TYPE agentmesh_tool_call_total counter
agentmesh_tool_call_total{policy="strict"} 3
# HELP agentmesh_cache_hits_total Not in the contract.
# TYPE agentmesh_cache_hits_total counter
agentmesh_cache_hits_total 7
"""


def test_wrong_buckets_missing_labels_and_extra_metrics_are_each_named() -> None:
    families = exposition.parse(EXPOSITION)
    (buckets,) = exposition.bucket_problems(families)
    assert buckets.startswith("agentmesh_policy_decision_duration_seconds{'policy': 'strict'}: "
                              "buckets [0.01, inf]")
    assert exposition.label_problems(families) == [
        "agentmesh_tool_call: samples labelled ['policy'], the contract says "
        "['decision', 'policy']"]
    assert exposition.undeclared_problems(families) == [
        "agentmesh_cache_hits_total: exposed but not in the telemetry contract"]
