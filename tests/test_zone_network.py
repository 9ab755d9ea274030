"""Zones with their own network, for real: a network namespace per zone (root only), HAProxy and
mesh processes on PostgreSQL, and each fault mode cut with nftables inside the zone and undone
by the test, also when it fails or is interrupted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mesh import faults
from mesh.local import zonenet
from mesh.local.cluster import Cluster
from mesh.local.errors import ClusterError
from mesh.local.platform import LocalPlatform
from mesh.local.spec import ClusterSpec
from mesh.local.state import StateDir
from mesh.platform import zone_fault
from tests.clusterkit import meshsre, wait_for
from tests.conftest import temporary_database

needs_root = pytest.mark.skipif(zonenet.unavailable() is not None,
                                reason=f"zone networks: {zonenet.unavailable()}")
BARE = frozenset({"prometheus", "alertmanager", "nats"})


@pytest.mark.parametrize(("text", "parsed"), [
    ("power", faults.FaultMode("power")), ("blackhole", faults.FaultMode("blackhole")),
    ("partition", faults.FaultMode("partition")), (" loss:20", faults.FaultMode("loss", 20)),
    ("loss:100", faults.FaultMode("loss", 100)), ("data", faults.FaultMode("data"))])
def test_fault_modes_parse(text: str, parsed: faults.FaultMode) -> None:
    assert faults.parse(text) == parsed
    assert faults.parse(str(parsed)) == parsed


@pytest.mark.parametrize(("text", "says"), [
    ("loss", "loss:N with N a whole percent"), ("loss:0", "from 1 to 100"),
    ("loss:2.5", "whole percent"), ("loss:101", "from 1 to 100"),
    ("power:3", "takes no parameter"), ("flood", "use one of power, blackhole, loss:N")])
def test_a_bad_fault_mode_says_what_to_write(text: str, says: str) -> None:
    with pytest.raises(faults.FaultModeError, match=says):
        faults.parse(text)


def _fault_tables(netns: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "tables"],
                          capture_output=True, text=True, timeout=10, check=True)
    return done.stdout


def _leftovers(prefix: str) -> list[str]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return [line for line in (netns + links + tables).splitlines() if prefix in line]


@pytest.fixture(scope="module")
def zoned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    if zonenet.unavailable():
        pytest.skip(f"zone networks: {zonenet.unavailable()}")
    paths = StateDir(tmp_path_factory.mktemp("zoned"))
    with temporary_database() as database:
        cluster = Cluster(paths)
        spec = ClusterSpec(zones=("a", "b"), replicas_per_zone=1, storage=database,
                           base_port=0, without=BARE)
        try:
            cluster.up(spec, timeout=30)
            yield LocalPlatform(paths)
        finally:
            cluster.down()
            assert _leftovers(zonenet.prefix_of(paths.root)) == []


def _replica(platform: LocalPlatform, zone: str) -> str:
    return next(r.url for r in platform.replicas() if r.zone == zone)


def _served(front: httpx.Client, n: int) -> list[str]:
    out = []
    for _ in range(n):
        r = front.get("/health/ready")
        assert r.status_code == 200, r.text
        out.append(r.headers["x-served-by"])
    return out


@pytest.fixture
def front(zoned: LocalPlatform) -> Iterator[httpx.Client]:
    url = zoned.cluster.describe()["front_door"]
    with httpx.Client(base_url=url, timeout=15, trust_env=False) as client:
        yield client


def test_each_zone_has_its_own_namespace_and_addresses(zoned: LocalPlatform,
                                                       front: httpx.Client) -> None:
    info = zoned.cluster.describe()
    assert info["network"] == "zones"
    links = {z["zone"]: z for z in info["zone_network"]["zones"]}
    for r in zoned.replicas():
        assert r.ready and r.url.startswith(f"http://{links[r.zone]['subnet'][:-4]}"), r
        assert links[r.zone]["netns"].startswith(zonenet.prefix_of(zoned.paths.root))
    # The replicas reach PostgreSQL on 127.0.0.1 through their gateway: every zone serves
    # (once HAProxy's checks have seen each rise).
    wait_for(lambda: set(_served(front, 4)) == {"a-0", "b-0"}, timeout=10, every=0.5)
    status = meshsre("status", "--state-dir", str(zoned.paths.root))
    assert "network:       zones (a network namespace each: a 10." in status.stdout


def _in_zone(link: zonenet.ZoneLink, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*zonenet.exec_prefix(link), sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=20)


def _left_the_zones(prefix: str) -> int:
    """Packets the region's forward hook dropped on their way out of the zones."""
    done = subprocess.run(["nft", "-j", "list", "chain", "ip", prefix, "between_zones"],
                          capture_output=True, text=True, timeout=10, check=True)
    rules = [e["rule"] for e in json.loads(done.stdout)["nftables"] if "rule" in e]
    return sum(x["counter"]["packets"] for r in rules for x in r["expr"] if "counter" in x)


_GET = "import urllib.request as u; print(u.urlopen('http://{}:{}/health/live', timeout=3).status)"
_SEND = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('{}', 9))"


@needs_root
def test_zones_reach_each_other_through_the_region_and_nothing_leaves(
        zoned: LocalPlatform) -> None:
    net = zonenet.ZoneNetwork.from_dict(zoned.cluster.load().network or {})
    a, b = net.link("a"), net.link("b")
    # Routed by the root namespace: zone a reaches zone b's replica on its own address.
    done = _in_zone(a, _GET.format(b.address(0), zonenet.REPLICA_PORT))
    assert done.stdout.strip() == "200", done.stderr
    # Anything else a zone sends is dropped, not forwarded: TEST-NET-1 never leaves.
    before = _left_the_zones(net.prefix)
    assert _in_zone(a, _SEND.format("192.0.2.1")).returncode == 0
    wait_for(lambda: _left_the_zones(net.prefix) > before, timeout=5, every=0.2)
    with zone_fault(zoned, "a", "partition", timeout=30):
        done = _in_zone(a, _GET.format(b.address(0), zonenet.REPLICA_PORT))
        assert done.returncode != 0 and "timed out" in done.stderr, done.stderr
        # The front door, in the root namespace, still reaches the zone.
        assert httpx.get(_replica(zoned, "a") + "/health/live", timeout=2,
                         trust_env=False).status_code == 200


@needs_root
def test_blackhole_drops_everything_and_the_front_door_routes_around(
        zoned: LocalPlatform, front: httpx.Client) -> None:
    a = _replica(zoned, "a")
    with zone_fault(zoned, "a", "blackhole", timeout=30) as failed:
        assert failed["mode"] == "blackhole" and failed["killed"] == []
        assert "inet meshsre_fault" in _fault_tables(f"{zonenet.prefix_of(zoned.paths.root)}-a")
        with pytest.raises(httpx.ConnectTimeout):
            httpx.get(a + "/health/live", timeout=1.0, trust_env=False)
        wait_for(lambda: not next(r for r in zoned.replicas() if r.zone == "a").ready, 5, every=0.1)
        # The replica is not dead, only unreachable: its process still runs.
        assert [s.alive for s in zoned.cluster.status() if s.zone == "a"] == [True]
        time.sleep(3)  # HAProxy: check inter 1s, fall 2, timeout check 1s
        assert set(_served(front, 6)) == {"b-0"}
    assert "meshsre_fault" not in _fault_tables(f"{zonenet.prefix_of(zoned.paths.root)}-a")
    assert httpx.get(a + "/health/ready", timeout=2, trust_env=False).status_code == 200


@needs_root
def test_loss_slows_the_zone_without_taking_it_down(zoned: LocalPlatform) -> None:
    a = _replica(zoned, "a")

    def requests(n: int) -> list[float]:
        took = []
        # One kept-alive connection: a lost SYN would cost a whole second (the initial RTO).
        with httpx.Client(timeout=30, trust_env=False) as c:
            for _ in range(n):
                began = time.perf_counter()
                try:
                    answer = c.get(a + "/health/live")
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    # The replica may close the kept-alive connection (its keep-alive timeout
                    # runs out while lost segments are retransmitted) just as this request is
                    # sent on it (seen as a protocol error, or a reset read): a client opens a
                    # new one. Once; a second loss is a failure.
                    answer = c.get(a + "/health/live")
                assert answer.status_code == 200
                took.append(time.perf_counter() - began)
        return took

    before = requests(20)
    with zone_fault(zoned, "a", "loss:30", timeout=30):
        during = requests(20)
    # Packets lost at random: every request still gets through, some after a retransmission
    # (TCP's retransmission timeout is 200 ms or more).
    assert max(during) >= 0.2 > max(before), (before, during)


@needs_root
def test_partition_cuts_the_data_tier_but_not_the_front_door(zoned: LocalPlatform) -> None:
    a = _replica(zoned, "a")
    with zone_fault(zoned, "a", "partition", timeout=30):
        # Reachable from the region: its liveness answers at once...
        assert httpx.get(a + "/health/live", timeout=2, trust_env=False).status_code == 200
        # ...but it cannot reach PostgreSQL any more: it says it is not ready.
        wait_for(lambda: httpx.get(a + "/health/ready", timeout=10,
                                   trust_env=False).status_code == 503, timeout=15, every=0.5)
    wait_for(lambda: httpx.get(a + "/health/ready", timeout=5, trust_env=False).status_code == 200,
             timeout=15, every=0.5)


@needs_root
def test_power_kills_the_zone_and_restore_brings_it_back(zoned: LocalPlatform) -> None:
    with zone_fault(zoned, "a", "power", timeout=30) as failed:
        assert failed["killed"] == ["mesh-a-0"] and failed["rules"] is None
        assert [s.alive for s in zoned.cluster.status() if s.zone == "a"] == [False]
    assert [r.ready for r in zoned.replicas() if r.zone == "a"] == [True]


@needs_root
def test_the_fault_is_undone_when_the_run_is_interrupted(zoned: LocalPlatform) -> None:
    netns = f"{zonenet.prefix_of(zoned.paths.root)}-a"
    with pytest.raises(KeyboardInterrupt), zone_fault(zoned, "a", "blackhole", timeout=30):
        assert "meshsre_fault" in _fault_tables(netns)
        raise KeyboardInterrupt  # Ctrl-C in the middle of a drill
    assert "meshsre_fault" not in _fault_tables(netns)


def test_bad_modes_and_unknown_zones_are_refused(zoned: LocalPlatform) -> None:
    with pytest.raises(ClusterError, match="loss:N with N a whole percent"):
        zoned.fail_zone("a", "loss:lots")
    with pytest.raises(ClusterError, match="unknown zone 'z'"):
        zoned.fail_zone("z", "blackhole")


def test_network_modes_need_the_zone_layout(tmp_path: Path) -> None:
    cluster = Cluster(StateDir(tmp_path))
    spec = ClusterSpec(zones=("a",), replicas_per_zone=1, base_port=0, network="loopback",
                       without=BARE | {"haproxy"})
    try:
        cluster.up(spec, timeout=30)
        status = meshsre("status", "--state-dir", str(tmp_path))
        assert "network:       loopback" in status.stdout
        with pytest.raises(ClusterError, match="restart it as root with `meshsre down && meshsre"
                                                " up --network zones`"):
            LocalPlatform(cluster.paths).fail_zone("a", "partition")
    finally:
        cluster.down()


@needs_root
def test_down_removes_what_an_interrupted_up_left(tmp_path: Path) -> None:
    """A zone network whose `up` died before it saved any state still goes at `down`."""
    net = zonenet.create(tmp_path, ("a", "b"), 1)
    zonenet.apply_fault(net, "a", faults.parse("blackhole"), [zonenet.REPLICA_PORT])
    prefix = zonenet.prefix_of(tmp_path)
    assert len([line for line in _leftovers(prefix) if "netns" not in line]) >= 3
    result = Cluster(StateDir(tmp_path)).down()
    assert {f"netns {prefix}-a", f"netns {prefix}-b"} <= set(result)
    assert _leftovers(prefix) == []


def test_without_root_zones_are_refused_with_the_way_out_and_auto_picks_loopback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zonenet, "unavailable", lambda: "network namespaces need root")
    spec = ClusterSpec(zones=("a",), replicas_per_zone=1, base_port=0, network="zones")
    with pytest.raises(ClusterError, match=r"^--network zones: network namespaces need root"
                                           r" \(or use --network loopback\)$"):
        Cluster(StateDir(tmp_path)).up(spec, timeout=5)
    assert not StateDir(tmp_path).state_file.exists()
    assert ClusterSpec(network="auto").layout() == "loopback"
    with pytest.raises(ClusterError, match="network must be auto, zones or loopback"):
        ClusterSpec(network="bridge")
