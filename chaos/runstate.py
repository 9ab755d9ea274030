"""What every activity and control of a run shares: its settings, its run directory and its notes.

Chaos Toolkit passes each activity the experiment's ``configuration`` (values from the
environment, overridable with ``chaos run --var``) and ``secrets``, and nothing else: an activity
cannot see what an earlier one returned. Measurements that span activities (the fault's start
time, the backup's manifest, the load's directory) are therefore kept as notes, a small JSON
file in the run directory, so that a probe can compute time to detect from the moment the
control saw the fault begin, and the run record can be built from the notes and the journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshsre import status

if TYPE_CHECKING:  # `meshsre serve` imports the CLI, hence this module: keep it light
    import httpx

__all__ = [
    "RUN_DIR_ENV",
    "Notes",
    "admin_token",
    "cluster_setting",
    "drill",
    "mesh_client",
    "mesh_url",
    "notes",
    "number",
    "required_admin_token",
    "run_dir",
    "setting",
]

RUN_DIR_ENV = "MESHSRE_RUN_DIR"
OUT_DIR = Path("reports/out")
_DEFAULT_RUN_DIR: Path | None = None
_CLUSTERS: dict[str, dict[str, Any]] = {}  # by state directory
# Where `meshsre status --json` names what a setting left empty falls back to, as the meshsre
# commands do: a plain `chaos run` needs no environment against the local cluster.
_CLUSTER_KEYS = {"mesh_url": "front_door", "prometheus_url": "prometheus",
                 "alertmanager_url": "alertmanager", "alerts_file": "alerts_file",
                 "admin_token": "admin_token"}


def setting(configuration: Mapping[str, Any] | None, key: str, env: str = "",
            default: Any = None) -> Any:
    """configuration[key] unless empty, else the environment variable env, else default."""
    value = (configuration or {}).get(key)
    if value in (None, "") and env:
        value = os.environ.get(env)
    return default if value in (None, "") else value


def number(configuration: Mapping[str, Any] | None, key: str, default: float) -> float:
    value = setting(configuration, key, default=default)
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"configuration {key} must be a number, got {value!r}") from exc


def _local_cluster() -> dict[str, Any]:
    """The local cluster of MESHSRE_STATE_DIR (default .meshsre), read once per process; empty
    when another platform is chosen, MESH_URL names a deployment, or no cluster is up."""
    if (os.environ.get("MESH_PLATFORM") or "local") != "local" or os.environ.get("MESH_URL"):
        return {}
    state_dir = os.environ.get("MESHSRE_STATE_DIR", ".meshsre")
    if state_dir not in _CLUSTERS:
        try:
            _CLUSTERS[state_dir] = status.local_cluster(state_dir)
        except status.StatusUnavailable:
            _CLUSTERS[state_dir] = {}
    return _CLUSTERS[state_dir]


def cluster_setting(configuration: Mapping[str, Any] | None, key: str, env: str) -> str:
    """A setting that, left empty in the configuration and the environment, is read from the
    local cluster (`meshsre status --json`); "" when there is none."""
    value = setting(configuration, key, env, "")
    if value == "":
        value = _local_cluster().get(_CLUSTER_KEYS[key]) or ""
    return str(value)


def admin_token(secrets: Mapping[str, Any] | None) -> str:
    """The admin token: the experiment's secret, MESH_ADMIN_TOKEN, else the local cluster's."""
    return cluster_setting(secrets, "admin_token", "MESH_ADMIN_TOKEN")


NO_TOKEN = ("needs the admin token: export MESH_ADMIN_TOKEN (or give secrets.mesh.admin_token in"
            " a --var-file); against `meshsre up` it is read from the cluster")


def required_admin_token(secrets: Mapping[str, Any] | None, what: str) -> str:
    """The admin token, or ActivityFailed saying that ``what`` needs one and where it goes."""
    token = admin_token(secrets)
    if not token:
        from chaoslib.exceptions import ActivityFailed

        raise ActivityFailed(f"{what} {NO_TOKEN}")
    return token


def _refused_for_want_of_token(response: httpx.Response) -> None:
    if response.status_code == 401:
        from chaoslib.exceptions import ActivityFailed

        raise ActivityFailed(f"{response.request.method} {response.request.url.path} {NO_TOKEN}")


def mesh_url(configuration: Mapping[str, Any] | None) -> str:
    url = cluster_setting(configuration, "mesh_url", "MESH_URL")
    if not url:
        raise ValueError("no mesh to talk to: start the local cluster with `meshsre up`, or set"
                         " MESH_URL (with PROMETHEUS_URL and MESH_ADMIN_TOKEN) for a deployment")
    return url.rstrip("/")


def mesh_client(configuration: Mapping[str, Any] | None, secrets: Mapping[str, Any] | None,
                timeout: float = 5.0) -> httpx.Client:
    """A client of the front door, with the admin token when there is one. trust_env=False:
    an HTTP(S)_PROXY in the environment must never see the drill's requests."""
    import httpx

    token = admin_token(secrets)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    hooks = {} if token else {"response": [_refused_for_want_of_token]}
    return httpx.Client(base_url=mesh_url(configuration), headers=headers, timeout=timeout,
                        trust_env=False, event_hooks=hooks)


def drill(configuration: Mapping[str, Any] | None) -> str:
    return str(setting(configuration, "drill", default="experiment"))


def run_dir(configuration: Mapping[str, Any] | None) -> Path:
    """Where the journal, notes, load and run record of this run go.

    `meshsre chaos` sets MESHSRE_RUN_DIR; a plain `chaos run` gets one directory per process
    under reports/out, shared by the control and every activity of the run.
    """
    global _DEFAULT_RUN_DIR
    configured = setting(configuration, "run_dir", RUN_DIR_ENV, "")
    if configured:
        path = Path(configured)
    else:
        if _DEFAULT_RUN_DIR is None:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            _DEFAULT_RUN_DIR = OUT_DIR / f"{stamp}-chaos"
        path = _DEFAULT_RUN_DIR
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


class Notes:
    """A JSON object on disk, updated under a lock (activities may run in threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path.with_name(f".{self.path.stem}.lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data

    def _write(self, data: Mapping[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.path)

    def reset(self, data: Mapping[str, Any]) -> None:
        """Start the notes of a new run (a reused run directory must not leak old ones)."""
        with self._locked():
            self._write(data)

    def get(self, key: str, default: Any = None) -> Any:
        return self.read().get(key, default)

    def set(self, key: str, value: Any) -> None:
        with self._locked():
            data = self.read()
            data[key] = value
            self._write(data)

    def set_default(self, key: str, value: Any) -> Any:
        """Set key only if absent; returns the value it holds afterwards."""
        with self._locked():
            data = self.read()
            if key not in data:
                data[key] = value
                self._write(data)
            return data[key]

    def merge(self, key: str, values: Mapping[str, Any]) -> None:
        """Update the object at key with values (measurements accumulate this way)."""
        with self._locked():
            data = self.read()
            data[key] = {**data.get(key, {}), **values}
            self._write(data)

    def append(self, key: str, item: Any) -> None:
        with self._locked():
            data = self.read()
            data[key] = [*data.get(key, []), item]
            self._write(data)


def notes(configuration: Mapping[str, Any] | None) -> Notes:
    return Notes(run_dir(configuration) / f"notes-{drill(configuration)}.json")
