"""The report's pieces on their own: quantile estimates, phases, windows, charts, settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reports.build import _complement
from reports.chaos import Fault
from reports.charts import Band, Line, bar_chart, line_chart
from reports.client import phases, weighted_quantile
from reports.records import LoadRecord
from reports.settings import QUICK, Settings, SettingsError

points = st.lists(st.tuples(st.floats(0, 1e4), st.floats(0.01, 100)), min_size=1, max_size=50)


@given(points, st.floats(0.01, 1.0), st.floats(0.01, 1.0))
def test_a_weighted_quantile_lies_within_the_values_and_grows_with_q(
        values: list[tuple[float, float]], q1: float, q2: float) -> None:
    lo, hi = sorted((q1, q2))
    a, b = weighted_quantile(values, lo), weighted_quantile(values, hi)
    assert a is not None and b is not None
    assert min(v for v, _ in values) <= a <= b <= max(v for v, _ in values)


def test_a_weighted_quantile_counts_weight_not_points() -> None:
    assert weighted_quantile([(1.0, 1), (50.0, 99)], 0.5) == 50.0
    assert weighted_quantile([(1.0, 99), (50.0, 1)], 0.99) == 1.0
    assert weighted_quantile([(1.0, 99), (50.0, 1)], 1.0) == 50.0
    assert weighted_quantile([(1.0, 0)], 0.5) is None


def _load(started: float, ended: float) -> LoadRecord:
    return LoadRecord("az-failure", Path("load.json"), {"started_at": started, "ended_at": ended})


def test_phases_split_a_load_at_the_fault_and_at_the_clients_recovery() -> None:
    windows = phases(_load(100.2, 160.7), [Fault(120.5, 200.0, 124.1, "zone a down")])
    assert [(w.name, w.start, w.end) for w in windows] == [
        ("baseline", 100, 120), ("fault", 120, 125), ("recovery", 125, 162)]


def test_a_fault_the_clients_never_saw_still_has_a_one_second_fault_phase() -> None:
    windows = phases(_load(100.0, 130.0), [Fault(110.0, 180.0, 110.0, "zone a down")])
    assert [(w.name, w.end - w.start) for w in windows] == [
        ("baseline", 10), ("fault", 1), ("recovery", 20)]


def test_without_recovery_time_the_fault_lasts_until_it_is_undone() -> None:
    windows = phases(_load(100.0, 130.0), [Fault(110.0, 120.0, None, "store destroyed")])
    assert [(w.name, w.start, w.end) for w in windows] == [
        ("baseline", 100, 110), ("fault", 110, 120), ("recovery", 120, 131)]
    (only,) = phases(_load(100.0, 130.0), [Fault(200.0, 210.0, None, "later")])
    assert (only.name, only.start, only.end) == ("whole run", 100, 131)


def test_the_judged_windows_are_the_run_without_the_disasters() -> None:
    assert _complement(0, 100, [(40, 60)]) == [(0, 40), (60, 100)]
    assert _complement(0, 100, [(0, 30), (29, 50), (99.5, 100)]) == [(50, 99.5)]
    assert _complement(0, 100, []) == [(0, 100)]


def test_an_empty_chart_says_so_and_is_marked_empty() -> None:
    svg = line_chart("Requests by zone", [Line("zone a", [])], x0=0)
    assert 'data-empty="true"' in svg and "no data" in svg
    assert 'data-empty="true"' in bar_chart("Delays", ["≤1s"], [("client", [0])])
    assert 'data-empty="false"' in bar_chart("Budget", ["n1"], [("used", [0])], zeros=True)


def test_a_line_breaks_where_samples_are_missing_instead_of_bridging_the_gap() -> None:
    pts = [(float(t), 1.0) for t in (*range(0, 20, 2), *range(60, 80, 2))]
    svg = line_chart("zone a", [Line("zone a", pts)], x0=0, bands=[Band(20, 60, "down")])
    (path,) = re.findall(r'<path d="([^"]+)"', svg)
    assert path.count("M") == 2 and path.count("L") == len(pts) - 2
    assert 'data-points="20"' in svg and "down" in svg


def test_the_quick_settings_are_the_quick_defaults_and_each_can_be_overridden() -> None:
    s = Settings.from_env({"NIGHTLY_QUICK": "1", "NIGHTLY_OBSERVE_SECONDS": "40",
                           "NIGHTLY_VAR_ZONE": "b"})
    assert (s.quick, s.platform, s.steady_seconds, s.replicas) == (
        True, "local", QUICK["steady_seconds"], QUICK["replicas"])
    assert s.observe_seconds == 40 and s.variables == {"zone": "b"}
    assert Settings.from_env({}).steady_seconds > s.steady_seconds


@pytest.mark.parametrize(("env", "message"), [
    ({"NIGHTLY_RATE": "fast"}, "NIGHTLY_RATE='fast': not a number"),
    ({"NIGHTLY_STEADY_SECONDS": "0"}, "NIGHTLY_STEADY_SECONDS='0': must be positive"),
    ({"MESH_PLATFORM": "kubernetes", "MESH_URL": "http://m"},
     "MESH_PLATFORM=kubernetes needs PROMETHEUS_URL"),
    ({"MESH_PLATFORM": "nomad"}, "MESH_PLATFORM='nomad': use local or kubernetes"),
    ({"NIGHTLY_FAIL_ON": "slo,typo"}, "NIGHTLY_FAIL_ON='slo,typo': unknown typo"),
    ({"NIGHTLY_ZONE_MODES": "power,loss:x"},
     "NIGHTLY_ZONE_MODES='power,loss:x': fault mode 'loss:x': write loss:N"),
])
def test_a_setting_the_job_cannot_use_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)


def test_a_full_night_runs_every_network_mode_and_a_quick_one_blackhole() -> None:
    assert Settings.from_env({}).zone_modes == ("power", "blackhole", "loss:20", "partition")
    assert Settings.from_env({"NIGHTLY_QUICK": "1"}).zone_modes == ("blackhole",)
    chosen = Settings.from_env({"NIGHTLY_ZONE_MODES": " loss:5, power"})
    assert chosen.zone_modes == ("loss:5", "power")


def test_each_experiment_gets_only_the_settings_it_declares() -> None:
    from reports.job import Nightly
    from reports.progress import Progress
    from reports.stages import _variables

    job = Nightly(Settings.from_env({"NIGHTLY_QUICK": "1", "NIGHTLY_VAR_ROUNDS": "7"}),
                  Path("out"), Progress(0))
    for name in ("az-failure", "backup-restore", "revocation", "data-failover"):
        config: dict[str, Any] = json.loads(
            (Path(__file__).parents[1] / "chaos" / f"{name}.json").read_text())["configuration"]
        given_vars = dict(v.removeprefix("--var=").split("=", 1) for v in _variables(job, name))
        assert set(given_vars) <= set(config), name
        assert "load_rate" in given_vars
    az = dict(v.removeprefix("--var=").split("=", 1) for v in _variables(job, "az-failure"))
    rev = dict(v.removeprefix("--var=").split("=", 1) for v in _variables(job, "revocation"))
    assert az["observe_seconds"] == str(QUICK["observe_seconds"])
    assert az["load_rate"] == str(QUICK["rate"])
    assert rev["rounds"] == "7" and "rounds" not in az  # NIGHTLY_VAR_ROUNDS


def test_the_data_failover_stage_row_names_failover_writes_lost_rpo_and_lag() -> None:
    from reports.stages import _figures

    m = {"failover_seconds": 10.4, "failed_primary": "pg-a", "new_primary": "pg-c",
         "replication": "async", "writes_lost": 3, "rpo_seconds": 0.061,
         "lag_bytes_before": 21160, "lag_bytes_during": 0, "ttd_seconds": 12.2,
         "ttd_alert": "ApiAvailabilityBudgetBurn"}
    assert _figures("data-failover", {"measurements": m}) == (
        "failover 10.4 s (pg-a -> pg-c, async), 3 acknowledged writes lost, RPO 0.061 s,"
        " lag 21160 B before / 0 B during, TTD 12.2 s (ApiAvailabilityBudgetBurn)")
