"""What clients saw across a zone fault: errors by kind from the load generator's exceptions,
time to recover by CO-corrected latency, and the bound the front door's timeouts allow."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from chaos.impact import LATENCY_FLOOR_MS, expected, impact
from loadtests.recorder import Recorder, error_kind
from mesh.local.render import front_door_timeouts
from mesh.settings import Settings


def _real_errors() -> dict[str, BaseException]:
    """The exceptions a client really gets: a port nobody listens on, a silent peer."""
    out: dict[str, BaseException] = {}
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1)
    except OSError as exc:
        out["refused"] = exc
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=0.05) as client:
            try:
                client.recv(1)
            except OSError as exc:
                out["timeout"] = exc
    return out


def test_a_failure_is_classified_by_what_the_client_got() -> None:
    errors = _real_errors()
    assert error_kind(0, errors["refused"]) == "refused"
    assert error_kind(0, errors["timeout"]) == "timeout"
    assert error_kind(0, ConnectionResetError()) == "reset"
    assert error_kind(504, None) == error_kind(503, Exception("HTTP 503")) == "5xx"
    assert error_kind(429, Exception("expected 200")) is None  # answered: not the zone's
    assert error_kind(200, None) is None


def test_the_recorder_counts_errors_by_kind_per_second_and_across_processes() -> None:
    worker = Recorder()
    worker.record("POST", "/v1/x", 504, 5000.0, failed=True, second=7, kind="5xx")
    worker.record("GET", "/v1/y", 0, 1000.0, failed=True, second=7, kind="timeout")
    worker.record("GET", "/v1/y", 200, 1.0, second=7)
    master = Recorder()
    master.merge(worker.drain())
    master.finish()
    rows = master.rows[7]
    assert rows["POST /v1/x"]["errors"] == {"5xx": 1}
    assert rows["GET /v1/y"]["errors"] == {"timeout": 1}
    assert master.routes["GET /v1/y"].totals()["errors"] == {"timeout": 1}


def _series(p99: dict[int, float], errors: dict[int, dict[str, int]]) -> list[dict[str, Any]]:
    return [{"t": t, "requests": 20, "failures": sum(errors.get(t, {}).values()),
             "errors": errors.get(t, {}),
             "routes": {"GET /a": {"p99_corrected_ms": ms}, "POST /b": {"p99_corrected_ms": 1.0}}}
            for t, ms in sorted(p99.items())]


def test_time_to_recover_by_latency_ends_with_the_last_slow_second() -> None:
    # Baseline 5 ms (limit: the floor); seconds 102..107 slow, as a blackholed zone makes them.
    p99 = {t: 5.0 for t in range(90, 125)} | {t: 900.0 for t in range(102, 108)}
    result = impact(_series(p99, {107: {"5xx": 1}, 103: {"timeout": 2}}), fault_at=100.4,
                    seconds=20, settle=5)
    assert result["latency_limit_ms"] == LATENCY_FLOOR_MS
    assert result["p99_corrected_before_ms"] == 5.0
    assert result["p99_corrected_worst_second_ms"] == 900.0
    assert result["ttr_latency_seconds"] == 7.6 and result["latency_recovered"]
    assert result["errors_by_kind"] == {"timeout": 2, "refused": 0, "reset": 0, "5xx": 1,
                                        "other": 0}


def test_a_zone_still_slow_at_the_end_has_not_recovered() -> None:
    p99 = {t: 5.0 for t in range(90, 100)} | {t: 400.0 for t in range(100, 121)}
    result = impact(_series(p99, {}), fault_at=100.0, seconds=20, settle=5)
    assert result["ttr_latency_seconds"] is None and not result["latency_recovered"]
    assert result["slow_seconds"] == 20


def test_the_expected_recovery_quotes_the_front_doors_settings() -> None:
    door = front_door_timeouts(Settings(storage_timeout_seconds=2.0))
    assert door["timeout_server"] == 5.0  # two store deadlines and a second
    bound, why = expected("blackhole", door)
    assert bound == 2 * (1.0 + 0.25) + 5.0
    assert "timeout server 5 s" in why and "fall=2" in why and "timeout connect 1 s" in why
    assert expected("loss:20", door)[0] is None
    assert expected("partition", door)[0] == 7.5
    assert expected("power", door)[0] == 2.5
    assert expected("blackhole", None) == (None, "the front door's settings are not known on"
                                                 " this platform")


@pytest.mark.parametrize("storage", [0.5, 2.0, 3.0])
def test_the_front_door_waits_as_long_as_a_replica_can_take(storage: float) -> None:
    assert front_door_timeouts(Settings(storage_timeout_seconds=storage))["timeout_server"] == \
        2 * storage + 1
