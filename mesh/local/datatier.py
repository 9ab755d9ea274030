"""The zonal data tier of the local cluster (`meshsre up --storage patroni`): an etcd cluster of
one member per zone and one PostgreSQL per zone managed by Patroni, a primary and streaming
standbys. Replicas reach the primary through the front door's PostgreSQL frontend, which
health-checks each member's Patroni REST API (`GET /primary`), so a failover moves the door.

Each zone's members live in that zone, so the tier fails with it: in the zones layout inside
the zone's network namespace, on its data address and the standard ports (replication and
elections cross zones through the root namespace's routes); on loopback on the zone's first
replica address. Patroni and PostgreSQL refuse to run as root: as root they run as
the `postgres` user, and their data directories, under the state dir, belong to it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from mesh.local.errors import ClusterError
from mesh.local.state import Component, StateDir

__all__ = [
    "DATABASE",
    "KINDS",
    "PATRONI_VERSION",
    "REPLICATION_MODES",
    "cluster_view",
    "frontend_url",
    "kill_postgres",
    "patroni_dir",
    "plan",
    "postmaster_pid",
    "primary",
    "render",
    "wait_synchronous",
    "wait_writable",
]

KINDS = ("etcd", "patroni")
PATRONI_VERSION = "4.1.5"
SYNC_ROLES = ("quorum_standby", "sync_standby")  # a standby whose ack a commit may wait for
REPLICATION_MODES = ("sync", "async")
DATABASE = "mesh"
# Offsets from the base port, on each zone's address; the door's frontend is on loopback.
_ETCD_CLIENT, _ETCD_PEER, _PATRONI_API, _POSTGRES = 20, 21, 22, 23
_FRONTEND_OFFSET = 8
# In a zone's own network namespace every member has a host of its own: the standard ports.
_STANDARD_PORTS = {_ETCD_CLIENT: 2379, _ETCD_PEER: 2380, _PATRONI_API: 8008, _POSTGRES: 5432}
# Leader key TTL, loop and retry (Patroni wants loop_wait + 2 * retry_timeout <= ttl): a lost
# primary's key expires within 20 s (Patroni 4's smallest TTL), and the standbys look every
# second. A primary that cannot reach etcd for 6 s demotes itself; an etcd election (about a
# second) stays well within that.
_TTL, _LOOP_WAIT, _RETRY_TIMEOUT = 20, 1, 6
# PostgreSQL and Patroni refuse root; runuser keeps the environment (and so the cluster tag).
_DB_USER = "postgres"


def _missing(binary: str, package: str) -> ClusterError:
    return ClusterError(
        f"{binary} not found: install it with `apt-get install -y {package}` "
        "or choose another --storage"
    )


def _binary(name: str, package: str) -> str:
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if found is None:
        raise _missing(name, package)
    return found


def patroni_dir() -> Path:
    """Where `make setup` (scripts/install-patroni) puts PyPI's Patroni: as root outside any
    home, where the database user that runs it can read it; else beside the virtualenv."""
    base = Path("/var/lib/meshsre") if os.geteuid() == 0 else Path(sys.prefix)
    return base / f"patroni-{PATRONI_VERSION}"


def patroni_command() -> list[str]:
    """PyPI's Patroni on Debian's Python, whose packages (from Debian's `patroni`) it imports:
    psycopg2, PyYAML, urllib3. Not Debian's Patroni 3.0.2: once a zone that held the primary
    came back, its Patroni put the leader key back unconditionally (patroni/patroni#2689, fixed
    in 3.0.3) while another member was primary, and the writes acknowledged there were lost."""
    if not (patroni_dir() / "patroni" / "__init__.py").exists():
        raise ClusterError(
            f"Patroni {PATRONI_VERSION} is not installed in {patroni_dir()}: run `make setup`"
        )
    # Debian's patroni script names the interpreter that has those packages.
    shebang = Path(_binary("patroni", "patroni")).read_text().split("\n", 1)[0]
    return [shebang.removeprefix("#!").split()[0], "-m", "patroni"]


def _postgres_bin_dir() -> str:
    """The newest installed PostgreSQL server's binaries (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not found:
        raise _missing("postgres", "postgresql")
    return str(Path(found[-1]).parent)


def _as_db_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return [_binary("runuser", "util-linux"), "-u", _DB_USER, "--"]


def frontend_url(frontend: str, database: str = DATABASE) -> str:
    return f"postgresql://{_DB_USER}@{frontend}/{database}"


def plan(
    zones: tuple[str, ...],
    hosts: list[str],
    replication: str,
    paths: StateDir,
    take: Callable[[str, int], int],
    inside: Mapping[str, list[str]] | None = None,
    trusted: tuple[str, ...] = (),
) -> tuple[list[Component], dict[str, Any]]:
    """The tier's components (etcd members, then Patroni members) and what the rest of the
    cluster needs to know of it: the door's frontend address, the replication mode, the scope.
    ``inside`` maps each zone to the command prefix that runs a program in its namespace (the
    zones layout); ``trusted`` are the networks, beside loopback, that members and the door
    connect from."""
    if replication not in REPLICATION_MODES:
        raise ClusterError(f"replication must be one of {', '.join(REPLICATION_MODES)}")
    etcd, patroni = _binary("etcd", "etcd-server"), patroni_command()
    bin_dir = _postgres_bin_dir()
    inside = inside or {}
    ports = {
        z: {o: _STANDARD_PORTS[o] if z in inside else take(h, o) for o in _STANDARD_PORTS}
        for z, h in zip(zones, hosts, strict=True)
    }
    peers = ",".join(
        f"{z}=http://{h}:{ports[z][_ETCD_PEER]}" for z, h in zip(zones, hosts, strict=True)
    )
    scope = f"meshsre-{secrets.token_hex(4)}"  # etcd keys and the cluster token of this run
    components: list[Component] = []
    for z, h in zip(zones, hosts, strict=True):
        client, peer = ports[z][_ETCD_CLIENT], ports[z][_ETCD_PEER]
        components.append(
            Component(
                name=f"etcd-{z}",
                kind="etcd",
                host=h,
                port=client,
                aux_port=peer,
                zone=z,
                ready_path="/health",
                log=str(paths.logs / f"etcd-{z}.log"),
                argv=[
                    *inside.get(z, []),
                    etcd,
                    f"--name={z}",
                    f"--data-dir={paths.data / f'etcd-{z}'}",
                    f"--listen-client-urls=http://{h}:{client}",
                    f"--advertise-client-urls=http://{h}:{client}",
                    f"--listen-peer-urls=http://{h}:{peer}",
                    f"--initial-advertise-peer-urls=http://{h}:{peer}",
                    f"--initial-cluster={peers}",
                    f"--initial-cluster-token={scope}",
                    "--initial-cluster-state=new",
                    # A lost leader (its zone failed) must be replaced well within Patroni's
                    # retry_timeout: until then no read succeeds, and a primary that cannot
                    # read demotes itself. A 2.5 s election timeout demoted a healthy
                    # primary when the etcd leader's zone was blackholed; these are etcd's
                    # defaults, and pre-vote keeps a member back from a pause from deposing
                    # a working leader.
                    "--heartbeat-interval=100",
                    "--election-timeout=1000",
                    "--pre-vote",
                ],
            )
        )
    for z, h in zip(zones, hosts, strict=True):
        components.append(
            Component(
                name=f"pg-{z}",
                kind="patroni",
                host=h,
                port=ports[z][_PATRONI_API],
                aux_port=ports[z][_POSTGRES],
                zone=z,
                ready_path="/health",  # 200 once its PostgreSQL runs (a standby: streams)
                log=str(paths.logs / f"pg-{z}.log"),
                argv=[*inside.get(z, []), *_as_db_user(), *patroni, str(config_file(paths, z))],
                env={"PYTHONPATH": str(patroni_dir())},
            )
        )
    frontend = f"127.0.0.1:{take('127.0.0.1', _FRONTEND_OFFSET)}"
    info = {
        "frontend": frontend,
        "replication": replication,
        "scope": scope,
        "bin_dir": bin_dir,
        "etcd": [f"{c.host}:{c.port}" for c in components if c.kind == "etcd"],
        "trusted": ["127.0.0.0/8", *trusted],
    }
    return components, info


# Where members live when the database user cannot reach the state dir (see member_dir).
_SPARE_ROOT = Path("/var/tmp")


def spare_dir(paths: StateDir) -> Path:
    """This cluster's own directory for its members outside the state dir, by the state dir's
    absolute path, so that two clusters never share one."""
    digest = hashlib.sha256(str(paths.root.resolve()).encode()).hexdigest()[:12]
    return _SPARE_ROOT / f"meshsre-{digest}"


def member_dir(paths: StateDir, zone: str) -> Path:
    """A Patroni member's home (its data directory inside). As root, PostgreSQL runs as the
    database user, who must be able to walk down to it: a state dir where it cannot (a clone
    under /root, a 0700 temporary directory) keeps its members in ``spare_dir`` instead, so
    that `meshsre up --storage patroni` works wherever the repository is."""
    home = paths.data / f"pg-{zone}"
    if os.geteuid() != 0 or _reachable(paths.root / "data", pwd.getpwnam(_DB_USER).pw_uid):
        return home
    return spare_dir(paths) / f"pg-{zone}"


def config_file(paths: StateDir, zone: str) -> Path:
    """A member's Patroni configuration: beside its home when that is outside the state dir,
    where the database user can read it."""
    home = member_dir(paths, zone)
    return (paths.config if home.parent == paths.data else home.parent) / f"patroni-{zone}.yml"


def _patroni_config(member: Component, info: dict[str, Any], paths: StateDir) -> dict[str, Any]:
    home = member_dir(paths, member.zone or "")
    trust = [
        f"host {database} all {network} trust"
        for network in info.get("trusted", ["127.0.0.0/8"])
        for database in ("all", "replication")
    ]
    return {
        "scope": info["scope"],
        "namespace": "/meshsre/",
        "name": member.name,
        "log": {"level": "INFO"},
        "restapi": {"listen": member.address, "connect_address": member.address},
        "etcd3": {"hosts": info["etcd"], "protocol": "http"},
        "bootstrap": {
            "dcs": {
                "ttl": _TTL,
                "loop_wait": _LOOP_WAIT,
                "retry_timeout": _RETRY_TIMEOUT,
                "maximum_lag_on_failover": 1048576,
                # Quorum commit (Patroni 4): a commit waits for any one standby
                # (`ANY 1 (...)`), so a standby's zone failing stalls no write, and a failover
                # promotes only a standby the quorum shows holds every acknowledged one. Strict
                # off: with no standby left the primary goes on alone rather than stop the mesh.
                "synchronous_mode": "quorum" if info["replication"] == "sync" else False,
                "synchronous_mode_strict": False,
                "postgresql": {
                    "use_pg_rewind": True,
                    "use_slots": True,
                    "parameters": {
                        "wal_log_hints": "on",  # pg_rewind brings a failed primary back
                        "max_connections": 200,
                        "max_wal_senders": 10,
                        "max_replication_slots": 10,
                        "wal_keep_size": "128MB",
                        "shared_buffers": "32MB",
                        # A standby that vanishes without a reset (its zone blackholed) holds
                        # every synchronous commit until its walsender gives up on it; then
                        # Patroni names another. 60 s by default: a minute without writes.
                        "wal_sender_timeout": "5s",
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
            "pg_hba": trust,
        },
        "postgresql": {
            "listen": f"{member.host}:{member.aux_port}",
            "connect_address": f"{member.host}:{member.aux_port}",
            "data_dir": str(home / "data"),
            "bin_dir": info["bin_dir"],
            "pgpass": str(home / "pgpass"),
            "pg_hba": trust,
            "authentication": {
                "superuser": {"username": _DB_USER},
                "replication": {"username": "replicator", "password": "replicator"},
                "rewind": {"username": _DB_USER},
            },
            # No Unix sockets: the tier speaks TCP only, and never meets the system instance's.
            "parameters": {"unix_socket_directories": ""},
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True,
        },
    }


def _reachable(path: Path, uid: int) -> bool:
    """Whether user uid can walk down to path (the owner's or everyone's search bit on each
    directory above it); group bits are not considered."""
    for parent in [*reversed(path.parents)]:
        st = parent.stat()
        if not (st.st_mode & 0o001 or (st.st_uid == uid and st.st_mode & 0o100)):
            return False
    return True


def render(members: list[Component], info: dict[str, Any], paths: StateDir) -> list[Path]:
    """Write each Patroni member's configuration and give its fresh data directory to the
    database user (as root); YAML is a superset of JSON, so the files are JSON, byte for byte
    for the same state."""
    written = []
    owner = pwd.getpwnam(_DB_USER) if os.geteuid() == 0 else None
    for m in members:
        if m.kind != "patroni":
            continue
        home = member_dir(paths, m.zone or "")
        # A new plan is a new tier: etcd's membership names the peers' ports of this run, and
        # the scope is new, so what an earlier run left cannot join it.
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(paths.data / f"etcd-{m.zone}", ignore_errors=True)
        if home.parent != paths.data:  # spare_dir: others may walk through, not list it
            home.parent.mkdir(mode=0o711, exist_ok=True)
            home.parent.chmod(0o711)
        home.mkdir(parents=True, mode=0o700)
        if owner is not None:
            if not _reachable(home, owner.pw_uid):
                raise ClusterError(
                    f"the {_DB_USER} user cannot reach {home}: use a state dir it can reach "
                    f"(chmod o+x on each directory above it, or --state-dir elsewhere)"
                )
            os.chown(home, owner.pw_uid, owner.pw_gid)
        path = config_file(paths, m.zone or "")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_patroni_config(m, info, paths), indent=2, sort_keys=True))
        written.append(path)
    return written


def cluster_view(members: list[Component], timeout: float = 1.0) -> dict[str, Any] | None:
    """Patroni's view of the tier (`GET /cluster`) from the first member that answers."""
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        for m in members:
            try:
                r = client.get(m.url + "/cluster")
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                return dict(r.json())
    return None


def primary(members: list[Component], timeout: float = 1.0) -> Component | None:
    """The member whose Patroni says it is the running primary (`GET /primary` is 200)."""
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        for m in members:
            try:
                if client.get(m.url + "/primary").status_code == 200:
                    return m
            except httpx.HTTPError:
                continue
    return None


def postmaster_pid(paths: StateDir, member: Component) -> int | None:
    """PostgreSQL's postmaster pid, from its postmaster.pid (Patroni starts it in a session of
    its own, so signalling Patroni's group does not reach it)."""
    try:
        first = (member_dir(paths, member.zone or "") / "data" / "postmaster.pid").read_text()
    except OSError:
        return None
    head = first.split("\n", 1)[0].strip()
    return int(head) if head.isdigit() else None


def wait_writable(frontend: str, timeout: float) -> float:
    """Wait until a write through the door's frontend commits, creating the mesh's database on
    the way; returns the seconds waited."""
    import psycopg

    began = time.monotonic()
    deadline = began + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(
                frontend_url(frontend, "postgres"), autocommit=True, connect_timeout=2
            ) as conn:
                if conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,):
                    found = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if found is None:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    return time.monotonic() - began
        except psycopg.Error as exc:
            last = exc
        time.sleep(0.2)
    raise ClusterError(f"no writable primary behind {frontend} after {timeout:.0f}s: {last}")


def kill_postgres(paths: StateDir, member: Component, tag: str) -> bool:
    """SIGKILL the member's PostgreSQL, postmaster and backends at once (its process group),
    as a power loss would. Only a postmaster of this cluster (it carries the cluster's tag)."""
    from mesh.local import procs

    pid = postmaster_pid(paths, member)
    ours = {p.pid: p for p in procs.find_tagged(tag)}
    if pid is None or pid not in ours:
        return False
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 5.0
    while procs.alive(ours[pid]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not procs.alive(ours[pid])


def wait_synchronous(members: list[Component], timeout: float) -> float:
    """Wait until Patroni names a synchronous standby. Until then (strict mode off) the primary
    acknowledges writes it alone holds: `up` returns only once it no longer does."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        view = cluster_view(members)
        if view and any(m.get("role") in SYNC_ROLES for m in view.get("members", [])):
            return time.monotonic() - began
        time.sleep(0.2)
    raise ClusterError(f"no synchronous standby after {timeout:.0f}s: see the pg-*.log files")
