"""Process management of the local cluster: pid-checked signals that never reach a stranger."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.local import procs

IGNORES_SIGTERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "time.sleep(30)")


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not ours to stop: started outside mesh.local.procs, without a tag."""
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_started_process_is_alive_until_stopped_and_leaves_no_zombie(tmp_path: Path) -> None:
    proc = procs.spawn(["sleep", "30"], tmp_path / "sleep.log")
    assert procs.alive(proc)
    assert procs.stop(proc) == "stopped"
    assert not procs.alive(proc)
    assert procs.read_start_ticks(proc.pid) is None
    assert not Path(f"/proc/{proc.pid}").exists() or procs.read_start_ticks(proc.pid) is None


def test_a_reused_pid_is_not_signalled(stranger: subprocess.Popen[bytes]) -> None:
    ticks = procs.read_start_ticks(stranger.pid)
    assert ticks is not None
    # Same pid, another start time: what the state file holds after the pid was reused.
    recorded = procs.Proc(stranger.pid, ticks - 1)
    assert procs.stop(recorded) == "not running"
    assert procs.kill(recorded) is False
    assert procs.stop_all([recorded]) == {stranger.pid: "not running"}
    time.sleep(0.1)
    assert stranger.poll() is None


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    proc = procs.spawn([sys.executable, "-c", IGNORES_SIGTERM], tmp_path / "stubborn.log")
    time.sleep(0.3)  # let it install the handler
    started = time.monotonic()
    assert procs.stop_all([proc], grace=0.5) == {proc.pid: "killed"}
    assert 0.5 <= time.monotonic() - started < 3
    assert not procs.alive(proc)


def test_tagged_processes_are_found_with_their_children_and_strangers_are_not(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    tag = str(tmp_path)
    leader = procs.spawn(["sh", "-c", "sleep 30 & wait"], tmp_path / "sh.log",
                         env={procs.TAG_VAR: tag})
    deadline = time.monotonic() + 5
    while len(found := procs.find_tagged(tag)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = {p.pid for p in found}
    assert leader.pid in pids and len(pids) == 2
    assert stranger.pid not in pids
    outcome = procs.stop_all(found, grace=2)
    assert set(outcome.values()) <= {"stopped", "not running"}
    assert procs.find_tagged(tag) == []
    assert stranger.poll() is None


def test_a_command_that_cannot_start_raises_at_once(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        procs.spawn([str(tmp_path / "no-such-binary")], tmp_path / "x.log")
