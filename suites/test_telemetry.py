"""The telemetry suite: the live mesh exposes every metric of the telemetry contract with its
type, labels and buckets, and nothing else, and no series per agent (`--target`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.metrics_core import Metric

from suites import exposition
from suites.agents import MeshClient

# Behind a load balancer each scrape may come from another replica: check a few of them.
SCRAPES = 3

Check = Callable[[dict[str, Metric]], list[str]]


@pytest.fixture(scope="module")
def expositions(mesh: MeshClient) -> list[dict[str, Metric]]:
    # Traffic first, so that labelled families have samples to check. If the mesh cannot
    # take it, the api suite says why; the exposition is still worth checking.
    with contextlib.suppress(AssertionError, httpx.HTTPError, KeyError, ValueError):
        mesh.exercise()
    out = []
    for _ in range(SCRAPES):
        r = mesh.http.get("/metrics")
        assert r.status_code == 200, f"/metrics answered {r.status_code}"
        out.append(exposition.parse(r.text))
    return out


def _problems(check: Check, expositions: list[dict[str, Metric]]) -> str:
    found = sorted({p for families in expositions for p in check(families)})
    return "\n".join(found)


def test_every_contract_metric_is_exposed_with_its_type(expositions: list[dict[str, Metric]],
                                                        ) -> None:
    problems = _problems(exposition.type_problems, expositions)
    assert not problems, problems


def test_every_sample_carries_exactly_the_contract_labels(
    expositions: list[dict[str, Metric]],
) -> None:
    problems = _problems(exposition.label_problems, expositions)
    assert not problems, problems


def test_histograms_use_the_contract_buckets(expositions: list[dict[str, Metric]]) -> None:
    problems = _problems(exposition.bucket_problems, expositions)
    assert not problems, problems


def test_nothing_outside_the_contract_is_exposed(expositions: list[dict[str, Metric]]) -> None:
    problems = _problems(exposition.undeclared_problems, expositions)
    assert not problems, problems


def test_no_series_is_labelled_per_agent(expositions: list[dict[str, Metric]]) -> None:
    problems = _problems(exposition.per_agent_problems, expositions)
    assert not problems, problems
