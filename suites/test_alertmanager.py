"""The alertmanager suite (`--alertmanager`): Alertmanager is ready with a route and a
receiver, and (with `--prometheus`) Prometheus has discovered an Alertmanager to send to."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from suites.conftest import Targets
from suites.prom import Alertmanager, Prometheus


@pytest.fixture(scope="module")
def am(alertmanager_url: str) -> Iterator[Alertmanager]:
    client = Alertmanager(alertmanager_url)
    try:
        yield client
    finally:
        client.close()


def test_alertmanager_is_ready(am: Alertmanager) -> None:
    assert am.ready(), f"{am.url}/-/ready does not answer 200"


def test_alertmanager_routes_alerts_to_a_receiver(am: Alertmanager) -> None:
    config = am.config()
    receivers = {r["name"] for r in config.get("receivers", [])}
    assert receivers, "Alertmanager has no receiver: alerts go nowhere"
    root = config.get("route", {}).get("receiver")
    assert root in receivers, f"the root route's receiver {root!r} is not defined"


def test_prometheus_sends_alerts_to_an_alertmanager(am: Alertmanager, targets: Targets) -> None:
    if not targets.prometheus:
        pytest.skip("no Prometheus: pass --prometheus URL to check alert delivery")
    prom = Prometheus(targets.prometheus)
    # Prometheus discovers Alertmanagers a few seconds after it starts.
    deadline = time.monotonic() + targets.settle_seconds
    try:
        while not (active := prom.api("alertmanagers")["activeAlertmanagers"]):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        prom.close()
    assert active, "Prometheus has no active Alertmanager: alerts fire but nobody is told"
