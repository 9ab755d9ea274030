"""The prometheus suite (`--prometheus`): every target up, every generated rule group loaded
without evaluation errors, every recording rule returning data, and every SLO burning its
budget below its page thresholds. With `--target` it sends every kind of event, a round per
scrape interval until the rules have data, so that rate-based rules have something to compute."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from suites import promchecks
from suites.agents import MeshClient
from suites.conftest import Targets
from suites.prom import Prometheus


@pytest.fixture(scope="module")
def prom(prometheus_url: str) -> Iterator[Prometheus]:
    client = Prometheus(prometheus_url)
    try:
        yield client
    finally:
        client.close()


# Each warm-up round repeats the cheap events this often, to reach most replicas.
SPREAD = 6


@pytest.fixture(scope="module")
def warm(prom: Prometheus, targets: Targets) -> Iterator[Callable[[], None] | None]:
    """One round of traffic through the mesh, to call until the rules have data; None
    without --target. The first round is sent here."""
    if not targets.mesh:
        yield None
        return
    scrape, _ = prom.intervals()
    with httpx.Client(base_url=targets.mesh, timeout=10.0) as http:
        mesh = MeshClient(http, targets.admin_token)
        try:
            mesh.exercise(SPREAD)
            time.sleep(scrape)
            yield lambda: mesh.exercise(SPREAD)
        finally:
            mesh.cleanup()


def _settle(targets: Targets, step: float, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + targets.settle_seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(step)


def test_every_target_is_up(prom: Prometheus, targets: Targets) -> None:
    # Just after a (re)start, service discovery may not have found the mesh yet, and a
    # target never scraped reports "unknown": give both time, within --settle-seconds.
    def discovered() -> bool:
        found = prom.active_targets()
        return (any(t["labels"].get("job") == promchecks.MESH_JOB for t in found)
                and all(t["health"] != "unknown" for t in found))

    _settle(targets, 0.5, discovered)
    problems = promchecks.target_problems(prom.active_targets())
    assert not problems, "\n".join(problems)


def test_every_generated_rule_group_is_loaded_without_errors(prom: Prometheus) -> None:
    problems = promchecks.rule_problems(prom.rule_groups(), promchecks.expected_groups())
    assert not problems, "\n".join(problems)


def test_every_recording_rule_returns_data(prom: Prometheus, targets: Targets,
                                           warm: Callable[[], None] | None) -> None:
    rules = promchecks.recording_rules(promchecks.expected_groups())
    scrape, evaluation = prom.intervals()
    empty: list[str] = []

    def all_have_data() -> bool:
        empty[:] = [s for s in (promchecks.selector(r, lb) for r, lb in rules)
                    if not prom.query(s)]
        if empty and warm is not None:
            warm()  # another round, one scrape later than the last
        return not empty

    _settle(targets, max(scrape, evaluation, 0.5), all_have_data)
    hint = "" if warm else (
        "\n(no --target given, so no traffic was sent: a rule over an idle SLI has no data)")
    assert not empty, f"{len(empty)} recording rules return no data after " \
        f"{targets.settle_seconds:g}s:\n" + "\n".join(empty) + hint


def test_every_slo_burns_its_budget_below_the_page_thresholds(prom: Prometheus) -> None:
    problems = promchecks.burn_rate_problems(prom.query)
    assert not problems, "\n".join(problems)
