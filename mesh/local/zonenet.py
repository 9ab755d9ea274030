"""Zones with their own network: one network namespace per zone, and the faults cut into it.

Each zone is a namespace ``msre<h>-<zone>`` (``<h>`` from the state directory, so two clusters
never share one) joined to the root namespace by a veth pair: the zone's replicas listen on
``10.S.Z.10+i`` inside, its data-tier members (etcd, Patroni and PostgreSQL) on ``10.S.Z.5``,
and the root side holds ``10.S.Z.1``, the zone's gateway. The front door, Prometheus,
Alertmanager and the load stay in the root namespace, like clients of a region. The root
namespace routes between the zones (forwarding on their links only), so members replicate and
elect across zones; the cluster's nft table drops anything else a zone sends to be forwarded:
nothing leaves the machine.

The region's shared services (Redis, NATS, an external PostgreSQL) listen on 127.0.0.1 in the
root namespace. A zone reaches them at its gateway address: the cluster's nft table
``ip msre<h>`` rewrites such connections to 127.0.0.1 (``route_localnet`` on the root side of
the veth allows it) and gives them 127.0.0.1 as their source too, so servers that trust
loopback only still do.

Faults are an nft table ``inet meshsre_fault`` inside the zone's namespace, so deleting it
(or the namespace) undoes them whatever happened to the process that cut them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mesh.faults import FaultMode
from mesh.local.errors import ClusterError

__all__ = [
    "LAYOUTS",
    "ZoneLink",
    "ZoneNetwork",
    "apply_fault",
    "clear_fault",
    "create",
    "destroy",
    "destroy_prefix",
    "exec_prefix",
    "from_zone",
    "plan_network",
    "prefix_of",
    "unavailable",
]

LAYOUTS = ("zones", "loopback")  # `meshsre up --network`; auto picks zones as root
FAULT_TABLE = "meshsre_fault"
REPLICA_PORT = 8080  # each zone is a host of its own: every replica can use the same port
_LOCK = Path("/run/meshsre-zonenet.lock")  # picking a free 10.S/16 is check-then-create


@dataclass(frozen=True)
class ZoneLink:
    zone: str
    netns: str
    host_if: str  # the root namespace's end of the veth
    zone_if: str  # the zone's end, inside its namespace
    gateway: str  # the region (front door, data tier) as the zone sees it
    subnet: str

    def address(self, replica_index: int) -> str:
        net = ipaddress.ip_network(self.subnet)
        return str(net.network_address + 10 + replica_index)

    @property
    def data_address(self) -> str:
        """Where the zone's data-tier members listen: a host of the zone's own."""
        return str(ipaddress.ip_network(self.subnet).network_address + 5)


@dataclass(frozen=True)
class ZoneNetwork:
    prefix: str
    zones: tuple[ZoneLink, ...]

    def link(self, zone: str) -> ZoneLink:
        found = next((z for z in self.zones if z.zone == zone), None)
        if found is None:
            raise ClusterError(f"zone {zone!r} has no network namespace")
        return found

    @property
    def region(self) -> str:
        """Every zone's subnet: the 10.S.0.0/16 the cluster took."""
        return str(ipaddress.ip_network(self.zones[0].subnet).supernet(new_prefix=16))

    def to_dict(self) -> dict[str, Any]:
        return {"layout": "zones", "prefix": self.prefix, "zones": [asdict(z) for z in self.zones]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ZoneNetwork:
        return cls(data["prefix"], tuple(ZoneLink(**z) for z in data["zones"]))


def prefix_of(root: Path) -> str:
    return "msre" + hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:6]


def unavailable() -> str | None:
    """Why the zone layout cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", "nft") if _which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found (apt-get install -y iproute2 nftables)"
    return None


def _which(tool: str) -> str | None:
    return shutil.which(
        tool, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    )


def _run(argv: list[str], stdin: str | None = None, check: bool = True) -> str:
    tool = _which(argv[0]) or argv[0]
    done = subprocess.run(
        [tool, *argv[1:]], input=stdin, capture_output=True, text=True, timeout=20
    )
    if check and done.returncode != 0:
        raise ClusterError(f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _used_octets() -> set[int]:
    """Second octets of every 10/8 address or route in the root namespace."""
    text = _run(["ip", "-o", "-4", "addr", "show"]) + _run(["ip", "-4", "route", "show"])
    parts = [w.split("/")[0].split(".") for w in text.split() if w.startswith("10.")]
    return {int(p[1]) for p in parts if len(p) == 4 and p[1].isdigit()}


def exec_prefix(link: ZoneLink) -> list[str]:
    """The command prefix that runs a program inside the zone (``ip netns exec`` execs: the
    pid we record is the program's own)."""
    return [_which("ip") or "ip", "netns", "exec", link.netns]


def from_zone(url: str, link: ZoneLink) -> str:
    """``url`` as a process in the zone must spell it: loopback hosts become the gateway."""
    parts = urlsplit(url)
    host = parts.hostname
    if host not in ("127.0.0.1", "localhost"):
        return url
    netloc = parts.netloc.rpartition("@")
    hostport = netloc[2].replace(host, link.gateway, 1)
    return urlunsplit(parts._replace(netloc=netloc[0] + netloc[1] + hostport))


def plan_network(root: Path, zones: tuple[str, ...], octet: int) -> ZoneNetwork:
    prefix = prefix_of(root)
    links = tuple(
        ZoneLink(
            zone=z,
            netns=f"{prefix}-{z}",
            host_if=f"{prefix}{i:02d}",
            zone_if="zone0",
            gateway=f"10.{octet}.{i}.1",
            subnet=f"10.{octet}.{i}.0/24",
        )
        for i, z in enumerate(zones)
    )
    return ZoneNetwork(prefix, links)


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    with open(_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def create(root: Path, zones: tuple[str, ...], replicas_per_zone: int) -> ZoneNetwork:
    """Create the namespaces, links, replica addresses and the data-tier rewrite; undone again
    if any step fails."""
    with _machine_lock():
        destroy_prefix(prefix_of(root))  # leftovers of a cluster killed before its `down`
        used = _used_octets()
        start = int(prefix_of(root)[4:], 16)
        free = [o for o in (16 + (start + k) % 200 for k in range(200)) if o not in used]
        if not free:
            raise ClusterError("no free 10.S.0.0/16 block for the zone networks")
        net = plan_network(root, zones, free[0])
        try:
            for link in net.zones:
                _create_zone(link, replicas_per_zone)
            _run(["nft", "-f", "-"], stdin=_region_rules(net))
        except BaseException:
            destroy(net)
            raise
    return net


def _create_zone(link: ZoneLink, replicas: int) -> None:
    ns, host, inner = link.netns, link.host_if, link.zone_if
    prefixlen = ipaddress.ip_network(link.subnet).prefixlen
    _run(["ip", "netns", "add", ns])
    _run(["ip", "link", "add", host, "type", "veth", "peer", "name", inner, "netns", ns])
    _run(["ip", "addr", "add", f"{link.gateway}/{prefixlen}", "dev", host])
    _run(["ip", "link", "set", host, "up"])
    # Let the shared services' rewrite to 127.0.0.1 route: loopback addresses from a zone.
    Path(f"/proc/sys/net/ipv4/conf/{host}/route_localnet").write_text("1\n")
    # Zone to zone goes through the root namespace: forward what arrives on this link (only
    # this one; the region rules drop what would go anywhere but another zone).
    Path(f"/proc/sys/net/ipv4/conf/{host}/forwarding").write_text("1\n")
    _run(["ip", "-n", ns, "link", "set", "lo", "up"])
    for address in [link.data_address, *(link.address(i) for i in range(replicas))]:
        _run(["ip", "-n", ns, "addr", "add", f"{address}/{prefixlen}", "dev", inner])
    _run(["ip", "-n", ns, "link", "set", inner, "up"])
    _run(["ip", "-n", ns, "route", "add", "default", "via", link.gateway])


def _region_rules(net: ZoneNetwork) -> str:
    ifs = ", ".join(f'"{z.host_if}"' for z in net.zones)
    gateways = ", ".join(z.gateway for z in net.zones)
    return (
        f"table ip {net.prefix} {{\n"
        "  chain to_data_tier {\n"
        "    type nat hook prerouting priority dstnat;\n"
        f"    iifname {{ {ifs} }} ip daddr {{ {gateways} }} dnat to 127.0.0.1\n"
        "  }\n"
        "  chain as_loopback {\n"
        "    type nat hook input priority 100;\n"
        f"    iifname {{ {ifs} }} ip daddr 127.0.0.1 snat to 127.0.0.1\n"
        "  }\n"
        "  chain between_zones {\n"
        "    type filter hook forward priority filter;\n"
        f"    iifname {{ {ifs} }} oifname {{ {ifs} }} accept\n"
        f"    iifname {{ {ifs} }} counter drop\n"  # counted: what tried to leave
        f"    oifname {{ {ifs} }} counter drop\n"
        "  }\n"
        "}\n"
    )


def destroy(net: ZoneNetwork) -> None:
    """Remove the namespaces (their faults with them), links and rules; idempotent."""
    for link in net.zones:
        _run(["ip", "netns", "del", link.netns], check=False)
        _run(["ip", "link", "del", link.host_if], check=False)
    _run(["nft", "delete", "table", "ip", net.prefix], check=False)


def destroy_prefix(prefix: str) -> list[str]:
    """What a cluster with this prefix left behind, whatever its state file says."""
    if unavailable() is not None:
        return []
    names = [
        line.split()[0]
        for line in _run(["ip", "netns", "list"]).splitlines()
        if line.startswith(prefix + "-")
    ]
    for name in names:
        _run(["ip", "netns", "del", name], check=False)
    links = [
        w.rstrip(":").split("@")[0]
        for line in _run(["ip", "-o", "link"]).splitlines()
        for w in line.split()[1:2]
        if w.startswith(prefix)
    ]
    for name in links:
        _run(["ip", "link", "del", name], check=False)
    if prefix in _run(["nft", "list", "tables"], check=False).split():
        _run(["nft", "delete", "table", "ip", prefix], check=False)
    return names


def _fault_rules(net: ZoneNetwork, zone: str, mode: FaultMode, serve_ports: list[int]) -> str:
    """The rules of one fault, for both directions of the zone's traffic; loopback inside the
    zone is never touched."""
    if mode.name == "blackhole":
        verdict = {"input": ["drop"], "output": ["drop"]}
    elif mode.name == "loss":
        rule = f"numgen random mod 100 < {mode.percent} drop"
        verdict = {"input": [rule], "output": [rule]}
    elif mode.name == "partition":
        others = ", ".join(z.subnet for z in net.zones if z.zone != zone)
        ports = ", ".join(str(p) for p in serve_ports)
        # Only the zone's listening ports (its replicas', its data-tier members') stay open:
        # the front door and Prometheus still reach them, while the zone's own connections to
        # the region's services and to the other zones (the rest of the data tier) go
        # nowhere, pooled ones included. Its database member keeps the door but loses the
        # majority: the split brain on the data path that Patroni must settle.
        verdict = {
            "input": ([f"ip saddr {{ {others} }} drop"] if others else [])
            + [f"tcp dport {{ {ports} }} accept", "drop"],
            "output": ([f"ip daddr {{ {others} }} drop"] if others else [])
            + [f"tcp sport {{ {ports} }} accept", "drop"],
        }
    else:
        raise ClusterError(f"fault mode {mode} does not act on the network")
    chains = []
    for hook, rules in verdict.items():
        lo = "iifname" if hook == "input" else "oifname"
        body = "\n".join(f"    {r}" for r in [f'{lo} "lo" accept', *rules])
        chains.append(f"  chain {hook} {{\n    type filter hook {hook} priority -10;\n{body}\n  }}")
    return f"table inet {FAULT_TABLE} {{\n" + "\n".join(chains) + "\n}\n"


def apply_fault(net: ZoneNetwork, zone: str, mode: FaultMode, serve_ports: list[int]) -> str:
    """Cut the fault into the zone's namespace (replacing any fault there); returns the rules."""
    link = net.link(zone)
    rules = _fault_rules(net, zone, mode, serve_ports)
    clear_fault(net, zone)
    _run(["ip", "netns", "exec", link.netns, "nft", "-f", "-"], stdin=rules)
    return rules


def clear_fault(net: ZoneNetwork, zone: str) -> bool:
    """Remove the zone's fault; True if there was one."""
    link = net.link(zone)
    tables = _run(["ip", "netns", "exec", link.netns, "nft", "list", "tables"], check=False)
    if f"inet {FAULT_TABLE}" not in tables:
        return False
    _run(["ip", "netns", "exec", link.netns, "nft", "delete", "table", "inet", FAULT_TABLE])
    return True
