"""Where the suites point: command-line options (or the environment `meshsre status --env`
exports), and one fixture per target that skips its suite, with the reason, when it is absent.

    pytest suites --target URL [--prometheus URL] [--alertmanager URL]
                  [--kube-context C] --namespace N [--admin-token T]
    eval "$(meshsre status --env)" && pytest suites      # the local cluster
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from suites.agents import MeshClient

# Each option falls back to the variable of the same meaning (`meshsre status --env` sets them).
_OPTIONS = (
    ("--target", "MESH_URL", "base URL of the mesh (its front door, load balancer or Service)"),
    ("--prometheus", "PROMETHEUS_URL", "Prometheus that scrapes the mesh and loads its rules"),
    ("--alertmanager", "ALERTMANAGER_URL", "Alertmanager that Prometheus sends alerts to"),
    ("--kube-context", "", "kubeconfig context (default: the current one)"),
    ("--namespace", "", "Kubernetes namespace of the mesh: turns the kubernetes suite on"),
    ("--admin-token", "MESH_ADMIN_TOKEN", "the mesh's admin bearer token (audit checks)"),
    ("--audit-checkpoint", "MESHSRE_AUDIT_CHECKPOINT",
     "a file that keeps the audit checkpoint from run to run: checked, then replaced"),
    ("--audit-storage", "MESH_AUDIT_STORAGE_URL", "the mesh's store, for the audit tamper"
     " checks (else the local cluster's, from MESHSRE_STATE_DIR)"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("meshsre", "meshsre validation suites")
    for flag, env, text in _OPTIONS:
        default = (os.environ.get(env) or None) if env else None
        suffix = f" [env {env}]" if env else ""
        group.addoption(flag, default=default, help=text + suffix)
    group.addoption("--settle-seconds", type=float, default=90.0,
                    help="longest wait for Prometheus to see the suites' traffic [90]")


@dataclass(frozen=True)
class Targets:
    mesh: str | None
    prometheus: str | None
    alertmanager: str | None
    kube_context: str | None
    namespace: str | None
    admin_token: str | None
    settle_seconds: float
    audit_checkpoint: str | None = None
    audit_storage: str | None = None

    @classmethod
    def from_config(cls, config: pytest.Config) -> Targets:
        def opt(name: str) -> str | None:
            value = config.getoption(name)
            return str(value).rstrip("/") if value else None

        return cls(opt("target"), opt("prometheus"), opt("alertmanager"), opt("kube_context"),
                   opt("namespace"), config.getoption("admin_token") or None,
                   float(config.getoption("settle_seconds")), opt("audit_checkpoint"),
                   config.getoption("audit_storage") or _local_storage())


def _local_storage() -> str | None:
    """The local cluster's store (`meshsre status --env` exports MESHSRE_STATE_DIR)."""
    from mesh.local.state import StateDir

    root = os.environ.get("MESHSRE_STATE_DIR")
    state = StateDir(root).load() if root else None
    return state.storage_url if state is not None else None


def pytest_report_header(config: pytest.Config) -> list[str]:
    t = Targets.from_config(config)
    kube = f"{t.kube_context or '(current context)'}/{t.namespace}" if t.namespace else None
    rows = [("mesh", t.mesh), ("prometheus", t.prometheus), ("alertmanager", t.alertmanager),
            ("kubernetes", kube), ("admin token", "given" if t.admin_token else None)]
    return ["meshsre targets: " + ", ".join(f"{k}={v or '-'}" for k, v in rows)]


@pytest.fixture(scope="session")
def targets(pytestconfig: pytest.Config) -> Targets:
    return Targets.from_config(pytestconfig)


@pytest.fixture(scope="session", autouse=True)
def _record_targets(record_testsuite_property: object, targets: Targets) -> None:
    # Written into the JUnit XML, so a CI report says what was validated.
    for name in ("mesh", "prometheus", "alertmanager", "namespace"):
        value = getattr(targets, name)
        if value:
            record_testsuite_property(f"target.{name}", value)  # type: ignore[operator]


@pytest.fixture(scope="session")
def mesh_url(targets: Targets) -> str:
    if not targets.mesh:
        pytest.skip("no mesh target: pass --target URL (or set MESH_URL)")
    return targets.mesh


@pytest.fixture(scope="session")
def prometheus_url(targets: Targets) -> str:
    if not targets.prometheus:
        pytest.skip("no Prometheus: pass --prometheus URL (or set PROMETHEUS_URL)")
    return targets.prometheus


@pytest.fixture(scope="session")
def alertmanager_url(targets: Targets) -> str:
    if not targets.alertmanager:
        pytest.skip("no Alertmanager: pass --alertmanager URL (or set ALERTMANAGER_URL)")
    return targets.alertmanager


@pytest.fixture(scope="session")
def admin_token(targets: Targets) -> str:
    if not targets.admin_token:
        pytest.skip("no admin token: pass --admin-token (or set MESH_ADMIN_TOKEN)")
    return targets.admin_token


@pytest.fixture(scope="session")
def mesh(mesh_url: str, targets: Targets) -> Iterator[MeshClient]:
    with httpx.Client(base_url=mesh_url, timeout=10.0) as http:
        client = MeshClient(http, targets.admin_token)
        try:
            yield client
        finally:
            client.cleanup()  # deregister every agent the suites registered
