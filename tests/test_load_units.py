"""The load test's pure parts: pacing, histograms, profiles, thresholds, SLI windows, records.
(No Locust here: importing it would monkey-patch pytest's process with gevent.)"""

from __future__ import annotations

import doctest
import importlib
import json
import math
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.catalog import CATALOG
from loadtests import record
from loadtests.histogram import Histogram
from loadtests.pacer import Pacer
from loadtests.profiles import PROFILES, LoadParams, peak_rate
from loadtests.recorder import Cell, Recorder
from loadtests.run import LoadRun, RunError, parse_duration
from loadtests.sli import Snapshot, increase
from loadtests.thresholds import derive, evaluate

# -- pacer ---------------------------------------------------------------------------------


def test_the_pacer_releases_one_slot_per_interval_only_when_each_is_due() -> None:
    p = Pacer()
    p.set_rate(10.0, now=0.0)
    assert p.due(0.05) == [0.0]
    assert p.due(0.05) == []
    assert p.due(0.35) == pytest.approx([0.1, 0.2, 0.3])
    assert p.offered == 4 and p.dropped == 0


def test_the_offered_rate_does_not_follow_a_slow_server() -> None:
    # Nobody takes slots for 2 s (every user is stuck on a slow answer): the slots still come.
    p = Pacer(max_lag=5.0)
    p.set_rate(100.0, now=0.0)
    assert len(p.due(2.0)) == 201


def test_slots_older_than_max_lag_are_dropped_not_sent() -> None:
    p = Pacer(max_lag=1.0)
    p.set_rate(10.0, now=0.0)
    released = p.due(3.0)
    assert released[0] == pytest.approx(2.0)  # everything before now - max_lag is gone
    assert p.dropped == 20 and p.offered == 20 + len(released)
    p.drop(3, second=3)
    assert p.dropped == 23 and p.drain()[1] == {3: 23}


def test_a_faster_rate_applies_at_once_instead_of_after_the_old_interval() -> None:
    p = Pacer()
    p.set_rate(0.1, now=0.0)
    assert p.due(0.0) == [0.0]  # the next slot would be at 10 s
    p.set_rate(100.0, now=1.0)
    assert len(p.due(1.05)) == 5


def test_no_slot_is_released_at_rate_zero_and_a_restart_owes_nothing() -> None:
    p = Pacer()
    assert p.due(10.0) == []
    p.set_rate(5.0, now=0.0)
    p.restart(100.0)
    assert p.due(100.0) == [100.0]
    with pytest.raises(ValueError, match="rate"):
        p.set_rate(-1.0, now=0.0)


# -- histogram and recorder ----------------------------------------------------------------


@given(st.lists(st.floats(min_value=0.01, max_value=60_000.0), min_size=1, max_size=300),
       st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]))
def test_every_quantile_is_within_two_percent_of_the_exact_nearest_rank(
    values: list[float], q: float
) -> None:
    h = Histogram()
    for v in values:
        h.record(v)
    exact = sorted(values)[max(1, math.ceil(q * len(values))) - 1]
    assert h.quantile(q) == pytest.approx(exact, rel=0.02)


def test_histograms_merge_and_travel_as_plain_lists() -> None:
    a, b = Histogram(), Histogram()
    for v in (1.0, 2.0, 3.0):
        a.record(v)
    b.record(1000.0)
    a.merge(Histogram.from_wire(json.loads(json.dumps(b.to_wire()))))
    assert (a.count, a.max) == (4, 1000.0)
    assert a.quantile(1.0) == 1000.0 and a.share_at_most(5.0) == 0.75


def test_a_late_request_counts_its_wait_in_the_corrected_latency_only() -> None:
    r = Recorder(late_after_ms=50.0)
    r.record("GET", "/health/live", 200, service_ms=2.0, lag_ms=998.0, second=7)
    r.record("GET", "/health/live", 200, service_ms=2.0, lag_ms=0.1, second=7)
    cell = r.routes["GET /health/live"]
    assert cell.service.max == 2.0 and cell.corrected.max == 1000.0 and cell.late == 1


def test_workers_cells_merge_into_the_masters_seconds_and_totals() -> None:
    worker, master = Recorder(), Recorder()
    worker.record("POST", "/v1/agents", 201, service_ms=3.0, second=5)
    worker.record("POST", "/v1/agents", 503, service_ms=1.0, failed=True, second=6)
    master.record("POST", "/v1/agents", 201, service_ms=4.0, second=5)
    master.merge(json.loads(json.dumps(worker.drain())))
    assert worker.cells == {}
    total = master.routes["POST /v1/agents"]
    assert total.statuses == Counter({201: 2, 503: 1}) and total.server_errors == 1
    master.finish()
    assert master.rows[5]["POST /v1/agents"]["requests"] == 2
    assert master.rows[6]["POST /v1/agents"]["server_errors"] == 1


# -- profiles --------------------------------------------------------------------------------


def test_the_spike_offers_three_times_the_rate_in_the_middle_fifth_only() -> None:
    p = LoadParams(users=10, rate=100.0, duration=100.0)
    rates = {t: PROFILES["spike"](t, p).rate for t in (20.0, 45.0, 55.0, 70.0)}  # type: ignore[union-attr]
    assert rates == {20.0: 100.0, 45.0: 300.0, 55.0: 300.0, 70.0: 100.0}
    assert peak_rate("spike", p) == 300.0


def test_the_step_climbs_in_four_stairs_and_every_profile_ends_with_its_duration() -> None:
    p = LoadParams(users=4, rate=80.0, duration=40.0)
    assert [PROFILES["step"](t, p).rate for t in (1, 11, 21, 31)] == [20, 40, 60, 80]  # type: ignore[union-attr]
    for name, profile in PROFILES.items():
        assert profile(40.0, p) is None, name
        assert profile(39.0, p) is not None, name
    assert PROFILES["steady"](1e6, LoadParams(users=1, rate=1.0)) is not None  # until stopped


def test_bad_numbers_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="users"):
        LoadParams(users=0, rate=1.0)
    with pytest.raises(ValueError, match="rate"):
        LoadParams(users=1, rate=float("nan"))
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration("ten minutes")
    assert parse_duration("1h2m3s") == 3723.0
    with pytest.raises(RunError, match="unknown shape"):
        LoadRun(host="http://x", shape="wavy").validate()


def test_the_planned_agents_keep_each_far_below_the_meshs_rate_limit() -> None:
    # The mesh limits each agent to 120 signed requests a minute (cluster-wide with Redis).
    # Of the workload's task weights (22), signed ones are decisions 8, challenges 3,
    # credentials 2 and revocations 1.
    spec = LoadRun(host="http://x", users=10, rate=1000.0, shape="spike")
    agents = spec.planned_agents_per_user(spec.validate())
    signed_per_agent_per_minute = 3000.0 * 14 / 22 / (10 * agents) * 60
    assert signed_per_agent_per_minute <= 120 / 2


# -- thresholds ------------------------------------------------------------------------------


def _cell(statuses: dict[int, int], ms: float = 1.0) -> Cell:
    c = Cell(statuses=Counter(statuses))
    c.service.record(ms, sum(statuses.values()))
    c.corrected.record(ms, sum(statuses.values()))
    return c


def test_every_slo_in_the_catalog_becomes_a_threshold_with_its_own_numbers() -> None:
    thresholds = {t.id: t for t in derive()}
    assert set(thresholds) == {slo.id for slo in CATALOG}
    assert thresholds["api-availability"].limit == pytest.approx(0.001)
    latency = thresholds["policy-decision-latency"]
    assert (latency.kind, latency.le_ms, latency.limit) == ("latency", 5.0, 0.99)
    assert latency.covers("POST", "/v1/policy/decide") and not latency.covers("GET", "/v1/audit")
    assert thresholds["revocation-propagation"].le_ms == 5000.0
    assert not thresholds["api-availability"].covers("GET", "/health/live")


def test_server_errors_and_lost_answers_spend_the_budget_but_client_errors_do_not() -> None:
    routes = {"POST /v1/agents": _cell({201: 997, 409: 50, 500: 2, 0: 1})}
    verdicts = {v.threshold.id: v for v in evaluate(derive(), routes)}
    assert verdicts["registration-availability"].observed == pytest.approx(3 / 1050)
    assert verdicts["registration-availability"].passed is False
    assert verdicts["handshake-success"].passed is None  # nothing to judge is not a pass
    assert "FAIL registration-availability" in verdicts["registration-availability"].line()


def test_latency_is_judged_on_the_meshs_own_histogram_when_the_replicas_were_scraped() -> None:
    slow = {"POST /v1/policy/decide": _cell({200: 100}, ms=9.0)}  # HTTP made it slow
    client = {v.threshold.id: v for v in evaluate(derive(), slow)}["policy-decision-latency"]
    assert client.passed is False and client.basis == "client"
    server = {v.threshold.id: v for v in evaluate(derive(), slow,
                                                  server=lambda good, total: (995.0, 1000.0))}
    assert server["policy-decision-latency"].passed is True
    assert server["policy-decision-latency"].basis == "server"


def test_a_client_timing_verdict_says_why_and_gives_the_clients_own_overhead() -> None:
    routes = {"POST /v1/policy/decide": _cell({200: 100}, ms=9.0),
              "GET /health/live": _cell({200: 50}, ms=4.0)}
    (latency,) = [v for v in evaluate(derive(), routes, fallback="no /metrics here")
                  if v.threshold.id == "policy-decision-latency"]
    assert latency.basis == "client" and latency.passed is False
    assert "by client timings because no /metrics here" in latency.detail
    assert "the client's own overhead (GET /health/live" in latency.detail
    assert "p99 4.0" in latency.detail


def test_revocation_delays_pass_under_five_seconds_and_a_timeout_fails() -> None:
    t = [t for t in derive() if t.kind == "propagation"]
    assert evaluate(t, {}, [0.01, 0.2])[0].passed is True
    assert evaluate(t, {}, [0.01] * 50 + [None])[0].passed is False


def test_the_sli_window_survives_a_replica_restart() -> None:
    before = {"a": Snapshot.parse('x_total{code="200"} 10\n'),
              "b": Snapshot.parse('x_total{code="200"} 50\n')}
    after = {"a": Snapshot.parse('x_total{code="200"} 15\n'),
             "b": Snapshot.parse('x_total{code="200"} 4\n')}  # b restarted: 4 since
    assert increase(before, after, ['x_total{code=~"2.."}']) == [9.0]


# -- run record --------------------------------------------------------------------------------


def test_a_record_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    rec = record.build(run_id="r", parameters={}, started=100.0, ended=110.0,
                       recorder=Recorder(), per_second={}, thresholds=[], verdict={},
                       generator={}, ledger={}, revocation={}, files={})
    path = record.write(tmp_path, rec)
    assert set(record.read(path)) == set(record.FIELDS)
    path.write_text(json.dumps({**rec, "schema_version": 99}))
    with pytest.raises(record.RecordError, match="version 99"):
        record.read(path)


def test_a_generator_pinned_above_ninety_percent_for_three_seconds_is_saturated() -> None:
    assert record.cpu_saturated([50.0, 95.0, 99.0, 97.0])
    assert not record.cpu_saturated([95.0, 99.0, 60.0, 97.0, 91.0])  # spikes are not saturation


@pytest.mark.parametrize("module", ["histogram", "pacer", "profiles", "recorder", "thresholds",
                                    "sli", "run"])
def test_the_examples_in_the_docstrings_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"loadtests.{module}"))
    assert result.attempted > 0 and result.failed == 0


def test_these_modules_never_import_locust() -> None:
    assert not [m for m in sys.modules if m == "locust" or m.startswith(("locust.", "gevent"))]
