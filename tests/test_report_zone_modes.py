"""The SLO report with one AZ failure per fault mode: a row per mode (detect, recover by
errors and by latency, errors by kind) and the clients' latency and errors across each fault,
from the records of a real quick nightly (tests/testdata/nightly-quick) plus a blackhole run
built on its fault."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from reports.report import make_report

DATA = Path(__file__).parent / "testdata" / "nightly-quick"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = Path(shutil.copytree(DATA / "run", tmp_path / "20261124T012649Z-nightly"))
    power = json.loads((run / "chaos-az-failure.json").read_text())
    blackhole = copy.deepcopy(power)
    start = float(power["fault"]["started_at"])
    # A blackholed zone: requests on kept-alive connections stall for timeout server (5 s).
    timeline = [{"t": int(start) + s, "p99_corrected_ms": 5007.0 if 1 <= s <= 5 else 12.0,
                 "requests": 20, "failures": 1 if s == 5 else 0} for s in range(-10, 25)]
    blackhole["drill"] = "az-failure-blackhole"
    blackhole["measurements"] |= {
        "mode": "blackhole", "ttr_seconds": 5.7, "ttr_latency_seconds": 5.7,
        "latency_recovered": True, "p99_corrected_before_ms": 15.0,
        "p99_corrected_worst_second_ms": 5007.2, "expected_ttr_seconds": 7.5,
        "expected_ttr_explained": "HAProxy marks the zone's servers down after fall=2 failed"
                                  " checks ... at most 2.5 + 5 = 7.5 s",
        "errors_by_kind": {"timeout": 0, "refused": 0, "reset": 0, "5xx": 1, "other": 0},
        "client_timeline": timeline,
        # On the Patroni tier (chaos.datazone): the zone held the primary.
        "data_role": "leader", "data_member": "pg-a", "replication": "sync",
        "failed_primary": "pg-a", "new_primary": "pg-b", "failover_seconds": 23.4,
        "sql_writes_paused_seconds": 22.3, "sql_writes_acked": 2317, "sql_writes_lost": 0,
        "rpo_seconds": 0.0, "lag_bytes_before": 8432, "lag_bytes_during": 38408,
        "data_tier_whole_again": True}
    (run / "chaos-az-failure-blackhole.json").write_text(json.dumps(blackhole))
    return run


def test_each_mode_has_its_row_and_the_faults_are_charted_side_by_side(
        run_dir: Path, tmp_path: Path) -> None:
    built = make_report(run_dir, None, tmp_path / "h.jsonl")
    rows = {e["name"]: e for e in built.data["chaos"]}
    assert set(rows) == {"az-failure", "az-failure-blackhole"}
    assert rows["az-failure"]["mode"] == "power"  # a record from before the modes
    bh = rows["az-failure-blackhole"]
    assert (bh["mode"], bh["ttr_latency_s"], bh["expected_ttr_s"]) == ("blackhole", 5.7, 7.5)
    assert bh["errors_by_kind"]["5xx"] == 1
    assert rows["az-failure"]["data"] is None  # not on the Patroni tier
    assert bh["data"]["failover_seconds"] == 23.4 and bh["data"]["sql_writes_lost"] == 0
    html = built.files["html"].read_text()
    assert "Clients across each fault: p99 from the intended send time" in html
    assert 'data-series="blackhole" data-points="35"' in html
    assert "at most 2.5 + 5 = 7.5 s" in html
    assert "pg-a (leader): SQL writes paused 22.3 s, failover 23.4 s to pg-b" in html
    md = built.files["md"].read_text()
    assert ("mode blackhole: detect" in md and "5.7 s by latency (expected at most 7.5 s)" in md
            and "5xx 1" in md)
    assert ("data tier: pg-a was leader, SQL writes paused 22.3 s, failover 23.4 s to pg-b,"
            " SQL writes lost 0 (RPO 0" in md)
    labels = [f["label"] for f in built.data["faults"]]
    assert "az-failure-blackhole: zone a blackhole" in labels
