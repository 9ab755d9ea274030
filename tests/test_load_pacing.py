"""The generator's honesty: coordinated omission corrected, workers accounted for.

Both run the paced health workload (GET /health/live) as Locust subprocesses against small
loopback servers written for the fault: no real mesh can stall on cue.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loadtests import record
from tests.stallserver import StallServer
from tests.test_load_run import REPO, loadtest

pytestmark = pytest.mark.slow


def test_a_server_stalling_one_second_in_five_shows_a_p99_near_one_second_only_when_corrected(
    tmp_path: Path,
) -> None:
    # 200 requests/s from 4 users: a stall holds 4 requests (0.4% of a 5 s cycle), so the
    # service-time p99 misses it, while 20% of the schedule falls inside a stall.
    with StallServer(period=5.0, stall=1.0) as server:
        done = loadtest("--host", server.url, "--workload", "health", "--users", "4",
                        "--rate", "200", "--duration", "11s", "--revocation-every", "0",
                        "--run-id", "co", "--out", str(tmp_path), token=None)
    assert done.returncode == 0, done.stderr[-3000:]
    rec = record.read(tmp_path / "co" / "load.json")
    live = rec["totals"]["routes"]["GET /health/live"]
    assert live["service_ms"]["p99"] < 50, live  # what plain Locust would report
    assert 800 < live["corrected_ms"]["p99"] < 1100, live  # what users on schedule saw
    assert live["late"] > 0.1 * live["requests"]
    # Late, but (nearly) every slot was still sent: a loaded CI box may drop a handful.
    assert rec["totals"]["dropped"] <= 0.01 * live["requests"], rec["totals"]
    assert rec["totals"]["requests"] == pytest.approx(200 * 11, rel=0.15)


def _workers_of(runner: psutil.Process, deadline: float) -> list[psutil.Process]:
    while time.monotonic() < deadline:
        workers = [p for p in runner.children(recursive=True) if "--worker" in p.cmdline()]
        if len(workers) == 2:
            return workers
        time.sleep(0.2)
    raise AssertionError("the runner did not start two workers")


def test_a_distributed_run_that_loses_a_worker_is_marked_invalid(tmp_path: Path) -> None:
    with StallServer(period=5.0, stall=0.0) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loadtests", "--quiet", "--host", server.url,
             "--workload", "health", "--users", "4", "--rate", "100", "--duration", "14s",
             "--workers", "2", "--revocation-every", "0", "--run-id", "lost",
             "--out", str(tmp_path)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            workers = _workers_of(psutil.Process(proc.pid), time.monotonic() + 20)
            time.sleep(7)  # both workers send, and report to the master, for a while...
            workers[0].kill()  # ...then one dies without a word
            output, _ = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 3, output[-3000:]
    assert "INVALID: worker count dropped to 1 of 2 expected" in output
    rec = record.read(tmp_path / "lost" / "load.json")
    assert rec["verdict"]["valid"] is False
    assert rec["generator"]["workers"] == {"expected": 2, "min_seen": 1, "max_seen": 2}
    assert sum(label.startswith("worker-") for label in rec["generator"]["processes"]) == 2
    assert rec["series"][3]["workers"] == 2 and rec["series"][3]["requests"] > 0
