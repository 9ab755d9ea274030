"""`up` and `down` when things go wrong: a missing binary, a replica that cannot start, an
`up` killed half-way, a replica that died, a state file that outlived its processes."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from mesh.local import procs
from mesh.local.cluster import Cluster, proc_of
from mesh.local.spec import ClusterSpec
from mesh.local.state import StateDir
from tests.clusterkit import MESHSRE, meshsre

SMALL = ("--zones", "a", "--replicas-per-zone", "2", "--base-port", "0",
         "--without", "prometheus", "--without", "alertmanager")


def _nothing_left(state_dir: Path) -> bool:
    return procs.find_tagged(str(state_dir.resolve())) == []


def test_a_missing_binary_is_one_line_naming_the_debian_package(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = subprocess.run([MESHSRE, "up", "--state-dir", str(tmp_path / "s"), "--base-port", "0"],
                          capture_output=True, text=True, timeout=30, env={"PATH": str(empty)})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: prometheus not found: install it with `apt-get install -y prometheus` "
        "or run without it (--without prometheus)"]
    assert _nothing_left(tmp_path / "s")


def test_a_replica_that_cannot_start_fails_up_and_leaves_nothing_running(tmp_path: Path) -> None:
    state_dir = tmp_path / "s"
    done = meshsre("up", "--state-dir", str(state_dir), *SMALL,
                   "--storage", "sqlite:////proc/meshsre-nowhere/mesh.db", "--timeout", "4")
    assert done.returncode == 1
    # The replica keeps running but never reaches its store: up gives up and says where to look.
    assert "not ready after 4s: mesh-a-0" in done.stderr
    assert "mesh-a-0.log" in done.stderr
    assert _nothing_left(state_dir)
    assert not StateDir(state_dir).state_file.exists()


def test_down_after_an_up_killed_half_way_stops_everything_it_had_started(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "s"
    paths = StateDir(state_dir)
    up = subprocess.Popen([MESHSRE, "up", "--state-dir", str(state_dir), *SMALL],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    started: list[str] = []
    while not started and time.monotonic() < deadline:
        state = paths.load() if paths.state_file.exists() else None
        started = [c.name for c in (state.components if state else []) if c.pid]
        time.sleep(0.01)
    up.send_signal(signal.SIGKILL)
    up.wait()
    assert started, "up never got to start anything"
    assert not _nothing_left(state_dir)  # orphans of the dead `up` are running
    done = meshsre("down", "--state-dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    assert _nothing_left(state_dir)


def test_up_restarts_a_replica_that_died_and_keeps_the_others(tmp_path: Path) -> None:
    cluster = Cluster(StateDir(tmp_path))
    spec = ClusterSpec(zones=("a",), base_port=0, without=frozenset({"prometheus",
                                                                      "alertmanager"}))
    try:
        first = cluster.up(spec, timeout=30)
        assert first.outcome == "started"
        victim = first.state.component("mesh-a-1")
        assert victim is not None and procs.kill(proc_of(victim))
        others = {c.name: c.pid for c in first.state.components if c.name != "mesh-a-1"}
        again = cluster.up(spec, timeout=30)
        assert again.outcome == "reconciled"
        assert all(r.ready for r in cluster.status())
        now = {c.name: c.pid for c in cluster.load().components}
        assert now["mesh-a-1"] != victim.pid
        assert {k: now[k] for k in others} == others
        assert cluster.up(spec, timeout=30).outcome == "already up"
    finally:
        cluster.down()
    assert _nothing_left(tmp_path)


def test_a_state_file_whose_processes_are_all_gone_is_replaced_by_a_fresh_start(
    tmp_path: Path,
) -> None:
    cluster = Cluster(StateDir(tmp_path))
    spec = ClusterSpec(zones=("a",), replicas_per_zone=1, base_port=0,
                       without=frozenset({"prometheus", "alertmanager", "haproxy"}))
    try:
        old = cluster.up(spec, timeout=30).state
        for c in old.components:
            procs.kill(proc_of(c))  # as after a reboot
        nflog = tmp_path / "data" / "alertmanager" / "nflog"  # what the last one notified
        nflog.parent.mkdir(parents=True)
        nflog.write_bytes(b"notified")
        fresh = cluster.up(spec, timeout=30)
        assert fresh.outcome == "started"
        assert not nflog.exists()
        assert all(r.ready for r in cluster.status())
    finally:
        cluster.down()
    assert _nothing_left(tmp_path)


def test_zones_and_options_are_validated_before_anything_starts(tmp_path: Path) -> None:
    for bad in (("--zones", "a,a"), ("--zones", "A B"), ("--storage", "mysql://x")):
        done = meshsre("up", "--state-dir", str(tmp_path), *bad)
        assert done.returncode != 0 and done.stderr.startswith("Error:"), done.stderr
    assert not StateDir(tmp_path).state_file.exists()


@pytest.mark.parametrize("args", [("status",), ("status", "--json"), ("down",)])
def test_status_and_down_without_a_cluster_say_so(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = meshsre(*args, "--state-dir", str(tmp_path))
    if args[0] == "down":
        assert done.returncode == 0 and "nothing was running" in done.stdout
    else:
        assert done.returncode == 1 and "meshsre up" in done.stderr
