"""The Locust master and worker manifests, run as written (their command, args and settings)
against a real mesh process: the worker joins the master, the master's readiness probe path
answers, a run started from the web API sends signed traffic, and the run record lands in the
directory the manifest mounts for results. Only what needs a cluster is replaced: addresses,
ports and paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mesh.deploy.sync import REPO_ROOT
from mesh.process import MeshProcess, free_port

K8S = REPO_ROOT / "loadtests" / "k8s"
BIN = Path(sys.executable).parent


def _container(name: str) -> dict[str, Any]:
    docs = [d for f in ("master.yaml", "workers.yaml")
            for d in yaml.safe_load_all((K8S / f).read_text()) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment"
                      and d["metadata"]["name"] == name)
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def _settings() -> dict[str, str]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return dict(line.split("=", 1) for line in kustomization["configMapGenerator"][0]["literals"])


def _replace(args: list[str], flag: str, value: str) -> list[str]:
    assert any(a.startswith(f"{flag}=") for a in args), (flag, args)
    return [f"{flag}={value}" if a.startswith(f"{flag}=") else a for a in args]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[MeshProcess]:
    with MeshProcess(f"sqlite:///{tmp_path / 'mesh.db'}") as proc:
        yield proc


@pytest.mark.slow
def test_the_locust_manifests_run_a_distributed_load_test(mesh: MeshProcess,
                                                          tmp_path: Path) -> None:
    web, bus, results = free_port(), free_port(), tmp_path / "results"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MESH_", "LOCUST_"))},
           **_settings(), "HOME": str(tmp_path),
           # The image copies loadtests/locustfile.py to this path; here it is in the repo.
           "LOCUST_LOCUSTFILE": str(REPO_ROOT / "loadtests" / "locustfile.py"),
           "LOCUST_HOST": mesh.url}
    master, worker = _container("locust-master"), _container("locust-worker")
    assert master["command"] == worker["command"] == ["locust"]
    master_args = [*_replace(master["args"], "--run-dir", str(results)),
                   "--web-host=127.0.0.1", f"--web-port={web}",
                   "--master-bind-host=127.0.0.1", f"--master-bind-port={bus}"]
    worker_args = [*_replace(worker["args"], "--master-host", "127.0.0.1"),
                   f"--master-port={bus}"]
    log = (tmp_path / "locust.log").open("wb")
    procs = [subprocess.Popen([str(BIN / "locust"), *master_args], env=env, cwd=tmp_path,
                              stdout=log, stderr=subprocess.STDOUT)]
    procs.append(subprocess.Popen([str(BIN / "locust"), *worker_args], env=env, cwd=tmp_path,
                                  stdout=log, stderr=subprocess.STDOUT))
    try:
        probe = master["readinessProbe"]["httpGet"]["path"]
        with httpx.Client(base_url=f"http://127.0.0.1:{web}", timeout=5) as ui:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if (ui.get(probe).status_code == 200
                            and ui.get("/worker-count").json()["worker_count"] == 1):
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            else:
                raise AssertionError("the worker never joined the master")
            started = ui.post("/swarm", data={"user_count": "2", "spawn_rate": "2"}).json()
            assert started["success"], started
            deadline, stats = time.monotonic() + 30, {}
            while time.monotonic() < deadline:
                stats = ui.get("/stats/requests").json()
                measured = {s["name"]: s for s in stats["stats"]}
                if measured.get("/v1/policy/decide", {}).get("num_requests", 0) >= 5:
                    break
                time.sleep(0.5)
            total = stats["stats"][-1]
            assert total["num_requests"] > 0 and total["num_failures"] == 0, stats
            ui.post("/stop")
    finally:
        for proc in procs:
            _stop(proc)
        log.close()
    assert (results / "load.json").is_file(), (tmp_path / "locust.log").read_text()[-3000:]
