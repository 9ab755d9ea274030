"""The drills' load bookkeeping without a mesh: reusing someone else's live load, refusing a
stale one, and stopping only what this run started."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from chaos import load, runstate

HEADER = ("Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,"
          "99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response"
          " Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,"
          "Total Average Content Size\n")


def _history(directory: Path, end: int, seconds: int, rate: int = 20) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rows = [f"{end - seconds + i},10,,Aggregated,{rate},0,2,2,3,3,4,5,6,7,9,9,9,"
            f"{rate * i},0,2,2.5,1.1,9.0,480.0\n" for i in range(seconds + 1)]
    (directory / load.HISTORY).write_text(HEADER + "".join(rows))
    return directory


def _configuration(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    configuration = {"run_dir": str(tmp_path / "run"), "drill": "unit", "load_rate": 20,
                     **extra}
    runstate.notes(configuration).reset({})
    return configuration


def test_a_live_load_named_by_load_dir_is_reused_and_never_stopped(tmp_path: Path) -> None:
    external = _history(tmp_path / "steady", int(time.time()), 30)
    configuration = _configuration(tmp_path, load_dir=str(external))
    info = load.ensure_load(configuration)
    assert info["reused"] and not info["owned"] and info["dir"] == str(external)
    running = load.load_is_running(configuration=configuration)
    assert running["rps"] == 20.0 and running["seconds"] == 10
    assert load.stop_load(configuration=configuration)["stopped"] is False
    # Its ledger is written when it stops, by its owner: this run cannot check it, and says so.
    assert load.writes_lost(configuration=configuration)["skipped"] == "the load is not ours"


def test_a_stale_history_is_not_a_running_load(tmp_path: Path) -> None:
    external = _history(tmp_path / "old", int(time.time()) - 60, 30)
    configuration = _configuration(tmp_path, load_dir=str(external))
    runstate.notes(configuration).set("load", {"dir": str(external), "owned": False,
                                               "pid": None, "rate": 20})
    with pytest.raises(ActivityFailed, match="the load is not running"):
        load.load_is_running(configuration=configuration)


def test_a_load_below_its_target_rate_fails_the_check(tmp_path: Path) -> None:
    slow = _history(tmp_path / "slow", int(time.time()), 30, rate=10)
    configuration = _configuration(tmp_path)
    runstate.notes(configuration).set("load", {"dir": str(slow), "owned": False, "pid": None,
                                               "rate": 20})
    with pytest.raises(ActivityFailed, match="below 80% of 20/s"):
        load.load_is_running(configuration=configuration)


def test_stopping_when_nothing_was_started_is_a_no_op(tmp_path: Path) -> None:
    configuration = _configuration(tmp_path)
    assert load.stop_load(configuration=configuration) == {
        "stopped": False, "reason": "no load was started"}
    with pytest.raises(ActivityFailed, match="no load was started for this run"):
        load.load_is_running(configuration=configuration)


def test_without_a_mesh_the_load_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(ActivityFailed, match="set MESH_URL"):
        load.ensure_load(_configuration(tmp_path))


def test_run_for_counts_from_the_moment_the_notes_name(tmp_path: Path) -> None:
    configuration = _configuration(tmp_path)
    # The clients recovered 0.7 s ago: one second after that is 0.3 s away.
    runstate.notes(configuration).merge("fault", {"clients_recovered_at": time.time() - 0.7})
    waited = load.run_for(1.0, since="clients_recovered_at", configuration=configuration)
    assert 0.1 < waited < 0.5
    # Long past, or a mark the notes do not have: no wait, or the whole of it.
    runstate.notes(configuration).merge("fault", {"clients_recovered_at": time.time() - 60})
    assert load.run_for(1.0, since="clients_recovered_at", configuration=configuration) == 0.0
    assert load.run_for(0.2, since="no_such_mark", configuration=configuration) == 0.2
