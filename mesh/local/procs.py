"""Starting and stopping the cluster's processes without ever signalling a stranger.

A pid alone is not an identity: once a process dies its pid can be reused. Each start records
the kernel's start time of the process (/proc/PID/stat, field 22), and every signal is sent
only after checking that the pid still has that start time. Each process gets its own session
so that Ctrl-C in the terminal that ran `meshsre up` does not take the cluster down with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TAG_VAR",
    "Proc",
    "alive",
    "find_tagged",
    "kill",
    "read_start_ticks",
    "spawn",
    "stop",
    "stop_all",
]

# Every process of a cluster carries this variable (the state directory) in its environment,
# so `down` finds even a process started an instant before `up` died and could record it.
TAG_VAR = "MESHSRE_CLUSTER"

# Pids this interpreter started and has not reaped yet. The processes are started with
# posix_spawn rather than subprocess.Popen: they are meant to outlive us (`meshsre up` exits,
# a chaos run restores a zone and ends), and a Popen object would warn about that when
# collected. We reap the ones that die while we run, so that no zombie lingers.
_SPAWNED: set[int] = set()


@dataclass(frozen=True)
class Proc:
    pid: int
    start_ticks: int


def read_start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks after boot, or None if pid is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) is in parentheses and may contain spaces; split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    state, start = fields[0], int(fields[19])
    return None if state in ("Z", "X") else start


def spawn(argv: list[str], log: Path | str, env: dict[str, str] | None = None) -> Proc:
    """Start argv in a session of its own, stdin from /dev/null, stdout and stderr appended to
    log. Raises FileNotFoundError (or another OSError) when it cannot be executed."""
    log_path = Path(log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    executable = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if executable is None:
        raise FileNotFoundError(f"{argv[0]}: not found on PATH")
    pid = os.posix_spawn(
        executable,
        argv,
        {**os.environ, **(env or {})},
        setsid=True,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
    )
    _SPAWNED.add(pid)
    ticks = read_start_ticks(pid)
    if ticks is None:  # died at once (bad arguments): the log says why
        _reap(pid)
        return Proc(pid, -1)
    return Proc(pid, ticks)


def _reap(pid: int) -> None:
    """Collect the exit status of a dead child of ours, so that no zombie stays behind."""
    if pid not in _SPAWNED:
        return
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        done = pid
    if done:
        _SPAWNED.discard(pid)


def alive(proc: Proc | None) -> bool:
    if proc is None or proc.start_ticks < 0:
        return False
    if read_start_ticks(proc.pid) == proc.start_ticks:
        return True
    _reap(proc.pid)
    return False


def _signal(proc: Proc, sig: int) -> bool:
    if not alive(proc):
        return False
    try:
        # Our processes lead their own session and group: signal the group, so that anything
        # they forked goes too. The start-time check above makes sure the group is ours.
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        try:  # not a group leader (a grandchild found by its tag)
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return False
    return True


def _wait_gone(proc: Proc, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(proc):
            return True
        time.sleep(0.02)
    return not alive(proc)


def kill(proc: Proc | None, timeout: float = 5.0) -> bool:
    """SIGKILL, as a power loss does. True if it was running and is now gone."""
    if proc is None or not _signal(proc, signal.SIGKILL):
        return False
    return _wait_gone(proc, timeout)


def stop(proc: Proc | None, grace: float = 5.0) -> str:
    """SIGTERM, then SIGKILL after ``grace`` seconds: 'stopped', 'killed' or 'not running'."""
    if proc is None or not _signal(proc, signal.SIGTERM):
        return "not running"
    if _wait_gone(proc, grace):
        return "stopped"
    _signal(proc, signal.SIGKILL)
    _wait_gone(proc, 5.0)
    return "killed"


def stop_all(procs: list[Proc], grace: float = 5.0) -> dict[int, str]:
    """Stop many processes at once: SIGTERM to all, one shared grace period, then SIGKILL."""
    outcome = {p.pid: "stopped" if _signal(p, signal.SIGTERM) else "not running" for p in procs}
    deadline = time.monotonic() + grace
    pending = [p for p in procs if outcome[p.pid] == "stopped"]
    while pending and time.monotonic() < deadline:
        time.sleep(0.02)
        pending = [p for p in pending if alive(p)]
    for p in pending:
        outcome[p.pid] = "killed"
        kill(p)
    return outcome


def find_tagged(tag: str) -> list[Proc]:
    """Live processes whose environment has TAG_VAR=tag (ours, whatever the state file says)."""
    needle = f"{TAG_VAR}={tag}".encode()
    skip = {os.getpid(), os.getppid()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone already, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            ticks = read_start_ticks(int(entry.name))
            if ticks is not None:
                found.append(Proc(int(entry.name), ticks))
    return found
