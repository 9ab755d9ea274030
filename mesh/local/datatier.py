"""The zonal data tier of the local cluster (`meshsre up --storage patroni`): an etcd cluster of
one member per zone and one PostgreSQL per zone managed by Patroni, a primary and streaming
standbys. Replicas reach the primary through the front door's PostgreSQL frontend, which
health-checks each member's Patroni REST API (`GET /primary`), so a failover moves the door.

Each zone's members live on that zone's address (its first replica's), like the replicas, so
the tier fails with its zone. Patroni and PostgreSQL refuse to run as root: as root they run as
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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from mesh.local.errors import ClusterError
from mesh.local.state import Component, StateDir

__all__ = [
    "DATABASE",
    "KINDS",
    "REPLICATION_MODES",
    "cluster_view",
    "frontend_url",
    "kill_postgres",
    "plan",
    "postmaster_pid",
    "primary",
    "render",
    "wait_synchronous",
    "wait_writable",
]

KINDS = ("etcd", "patroni")
REPLICATION_MODES = ("sync", "async")
DATABASE = "mesh"
# Offsets from the base port, on each zone's address; the door's frontend is on loopback.
_ETCD_CLIENT, _ETCD_PEER, _PATRONI_API, _POSTGRES = 20, 21, 22, 23
_FRONTEND_OFFSET = 8
# Leader key TTL, loop and retry (Patroni wants loop_wait + 2 * retry_timeout <= ttl): a lost
# primary's key expires within 10 s, and the standbys look every second.
_TTL, _LOOP_WAIT, _RETRY_TIMEOUT = 10, 1, 4
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
) -> tuple[list[Component], dict[str, Any]]:
    """The tier's components (etcd members, then Patroni members) and what the rest of the
    cluster needs to know of it: the door's frontend address, the replication mode, the scope."""
    if replication not in REPLICATION_MODES:
        raise ClusterError(f"replication must be one of {', '.join(REPLICATION_MODES)}")
    etcd, patroni = _binary("etcd", "etcd-server"), _binary("patroni", "patroni")
    bin_dir = _postgres_bin_dir()
    ports = {
        z: {o: take(h, o) for o in (_ETCD_CLIENT, _ETCD_PEER, _PATRONI_API, _POSTGRES)}
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
                    # Longer than the 100/1000 ms defaults: two cores shared with a loaded
                    # mesh must not cost etcd its leader.
                    "--heartbeat-interval=250",
                    "--election-timeout=2500",
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
                argv=[*_as_db_user(), patroni, str(config_file(paths, z))],
            )
        )
    frontend = f"127.0.0.1:{take('127.0.0.1', _FRONTEND_OFFSET)}"
    info = {
        "frontend": frontend,
        "replication": replication,
        "scope": scope,
        "bin_dir": bin_dir,
        "etcd": [f"{c.host}:{c.port}" for c in components if c.kind == "etcd"],
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
    loopback_trust = ["host all all 127.0.0.0/8 trust", "host replication all 127.0.0.0/8 trust"]
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
                # Strict off: with its synchronous standby gone the primary goes on alone
                # rather than stop every write of the mesh; a failover still promotes only the
                # standby Patroni knows to be synchronous, so no acknowledged write is lost.
                "synchronous_mode": info["replication"] == "sync",
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
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
            "pg_hba": loopback_trust,
        },
        "postgresql": {
            "listen": f"{member.host}:{member.aux_port}",
            "connect_address": f"{member.host}:{member.aux_port}",
            "data_dir": str(home / "data"),
            "bin_dir": info["bin_dir"],
            "pgpass": str(home / "pgpass"),
            "pg_hba": loopback_trust,
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
        if view and any(m.get("role") == "sync_standby" for m in view.get("members", [])):
            return time.monotonic() - began
        time.sleep(0.2)
    raise ClusterError(f"no synchronous standby after {timeout:.0f}s: see the pg-*.log files")
