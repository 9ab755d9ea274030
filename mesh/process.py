"""Real server processes on free loopback ports, stopped for sure: a mesh (`meshsre serve`) and
NATS JetStream, used by the tests and the benchmarks (the sidecar's are in
``mesh.sidecar.process``)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

ADMIN_TOKEN = "test-admin-token"
# The issuer key every test replica shares, as ADMIN_TOKEN is (a base64 Ed25519 seed; see
# mesh.keys). The log key is one per store (log_key), so that meshes over different
# databases keep apart witnesses in a shared Redis.
ISSUER_KEY = "aXNzdWVyLWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDA="


def log_key(storage: str) -> str:
    return base64.b64encode(hashlib.sha256(b"test log key:" + storage.encode()).digest()).decode()


MESHSRE = str(Path(sys.executable).with_name("meshsre"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Service:
    """A server process on a free loopback port, its output in a file, stopped for sure."""

    name = "service"
    ready_path = "/health/ready"

    def __init__(
        self, host: str = "127.0.0.1", env: dict[str, str] | None = None, core: int | None = None
    ) -> None:
        self.host, self.port = host, free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.env = dict(env or {})
        self.core = core  # pin to one CPU (benchmarks), via taskset
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, wait_ready: bool = True, timeout: float = 15.0) -> Service:
        cmd = self.command()
        if self.core is not None:
            cmd = ["taskset", "-c", str(self.core), *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
        # A file, not a pipe: an undrained pipe would block the server once it fills.
        fd, name = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, env={**env, **self.env}, stdout=log, stderr=subprocess.STDOUT
            )
        if wait_ready:
            self.wait(timeout)
        return self

    def answers(self, path: str | None = None) -> bool:
        try:
            url = self.url + (path or self.ready_path)
            return httpx.get(url, timeout=0.5).status_code == 200
        except httpx.TransportError:
            return False

    def wait(self, timeout: float = 15.0, path: str | None = None) -> None:
        """Until ``path`` (default: the readiness path) answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.output()}")
            if self.answers(path):
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.name} at {self.url} not ready after {timeout}s; log:\n{self.output()}"
        )

    def output(self) -> str:
        if self.log_path is None:
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=5.0, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)


class MeshProcess(Service):
    name = "mesh"

    def __init__(
        self,
        storage: str,
        *,
        redis: str | None = None,
        nats: str | None = None,
        zone: str = "a",
        replica: str = "0",
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        core: int | None = None,
    ) -> None:
        base = {
            "MESH_ADMIN_TOKEN": ADMIN_TOKEN,
            "MESH_ISSUER_KEY": ISSUER_KEY,
            "MESH_LOG_KEY": log_key(storage),
            "MESH_ACCESS_LOG": "false",
            # Tests and benchmarks drive a mesh from one address far faster than any client
            # should; a test of the client limit sets its own.
            "MESH_CLIENT_RATE_PER_SECOND": "1000000",
            "MESH_CLIENT_BURST": "1000000",
        }
        super().__init__(host, {**base, **(env or {})}, core)
        self.storage, self.redis, self.nats = storage, redis, nats
        self.zone, self.replica = zone, replica
        self.name = f"mesh-{zone}{replica}"

    def command(self) -> list[str]:
        cmd = [
            MESHSRE,
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--storage",
            self.storage,
            "--zone",
            self.zone,
            "--replica",
            self.replica,
        ]
        if self.redis:
            cmd += ["--redis", self.redis]
        if self.nats:
            cmd += ["--nats", self.nats]
        return cmd

    def start(self, wait_ready: bool = True, timeout: float = 15.0) -> MeshProcess:
        super().start(wait_ready, timeout)
        return self

    def __enter__(self) -> MeshProcess:
        return self.start()


class NatsServer(Service):
    """`nats-server -js` with a store directory of its own: the event stream, for tests and
    benchmarks (never the machine's shared server)."""

    name = "nats"

    def __init__(self, store_dir: Path, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.store_dir = store_dir
        self.monitor_port = free_port(host)
        self.url = f"nats://{host}:{self.port}"

    def command(self) -> list[str]:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        return [
            binary,
            "-js",
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-sd",
            str(self.store_dir),
            "-m",
            str(self.monitor_port),
        ]

    def answers(self, path: str | None = None) -> bool:
        try:  # NATS answers on its monitoring port, whatever the path
            url = f"http://{self.host}:{self.monitor_port}/healthz?js-enabled-only=true"
            return httpx.get(url, timeout=0.5).status_code == 200
        except httpx.TransportError:
            return False

    def start(self, wait_ready: bool = True, timeout: float = 15.0) -> NatsServer:
        super().start(wait_ready, timeout)
        return self

    def __enter__(self) -> NatsServer:
        return self.start()
