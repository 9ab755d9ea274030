"""Alert quality in the SLO report: live precision from the pages of a real quick nightly run
(tests/testdata/nightly-quick), drill recall, and the backtest's figures beside them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reports.alerting import FAULT_GRACE_S
from reports.report import exit_code, make_report

DATA = Path(__file__).parent / "testdata" / "nightly-quick"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATA / "run", tmp_path / "20261124T012649Z-nightly"))


def _page(run: Path, name: str, at: float) -> None:
    line = {"received_at": at, "name": name, "status": "firing", "fingerprint": f"f-{name}",
            "startsAt": "2026-11-24T01:40:00Z", "labels": {"alertname": name,
                                                           "severity": "page"}}
    with (run / "alerts.jsonl").open("a") as out:
        out.write(json.dumps(line) + "\n")


def _fault(run: Path) -> dict[str, float]:
    fault: dict[str, float] = json.loads((run / "chaos-az-failure.json").read_text())["fault"]
    return fault


def test_the_zone_page_of_the_zone_drill_is_a_true_page_and_catches_the_drill(
        run_dir: Path, tmp_path: Path) -> None:
    report = make_report(run_dir, None, tmp_path / "h.jsonl").data
    live = report["alert_quality"]["live"]
    assert [(p["name"], p["fault"], p["false"]) for p in live["pages"]] == [
        ("MeshZoneDown", "az-failure: zone a down", False)]
    assert (live["precision"], live["false_pages"], live["recall"]) == (1.0, 0, 1.0)
    (drill,) = live["drills"]
    assert (drill["drill"], drill["caught_by"], drill["ttd_s"]) == (
        "az-failure", "MeshZoneDown", 63.73)
    row = next(a for a in report["alert_quality"]["alerts"] if a["alert"] == "MeshZoneDown")
    assert (row["live_s"], row["live_pages"], row["false_pages"]) == (63.73, 1, 0)
    # Resolved 3.5 s after the zone came back: its reset time on this stack.
    assert row["live_reset_s"] == pytest.approx(1795483718.5 - _fault(run_dir)["ended_at"], 0.1)
    assert row["backtest_s"] == row["expected_s"] == 120
    assert not [b for b in report["verdict"]["breaches"] if b["kind"] == "alerts"]


def test_a_page_outside_every_fault_window_is_a_false_page_and_fails_the_run(
        run_dir: Path, tmp_path: Path) -> None:
    # During the zone drill's warm-up, before the zone fails.
    _page(run_dir, "ApiAvailabilityBudgetBurn", _fault(run_dir)["started_at"] - 5)
    built = make_report(run_dir, None, tmp_path / "h.jsonl")
    live = built.data["alert_quality"]["live"]
    assert (live["precision"], live["false_pages"]) == (0.5, 1)
    (breach,) = [b for b in built.data["verdict"]["breaches"] if b["kind"] == "alerts"]
    assert breach["detail"].startswith("ApiAvailabilityBudgetBurn paged at ")
    assert exit_code(built, {"alerts"}) == 1 and exit_code(built, {"slo"}) == 0
    assert "FALSE PAGE" in built.files["html"].read_text()


def test_a_page_within_the_grace_after_a_fault_is_the_faults(run_dir: Path,
                                                            tmp_path: Path) -> None:
    assert FAULT_GRACE_S == 60
    _page(run_dir, "ApiAvailabilityBudgetBurn", _fault(run_dir)["ended_at"] + 10)
    live = make_report(run_dir, None, tmp_path / "h.jsonl").data["alert_quality"]["live"]
    assert (live["precision"], live["false_pages"]) == (1.0, 0)


def test_a_drill_its_alert_never_caught_is_a_live_miss(run_dir: Path, tmp_path: Path) -> None:
    path = run_dir / "chaos-az-failure.json"
    rec = json.loads(path.read_text())
    rec["measurements"].update(ttd_seconds=None, ttd_alert=None,
                               designated_alerts=["MeshZoneDown"])
    path.write_text(json.dumps(rec))
    report = make_report(run_dir, None, tmp_path / "h.jsonl").data
    assert report["alert_quality"]["live"]["recall"] == 0.0
    assert any(b["detail"] == "the az-failure drill was not caught by MeshZoneDown"
               for b in report["verdict"]["breaches"])
