"""The kubernetes suite end to end through the official client, against a hand-written fake
API server (no real one can run here) that serves the production overlay as `kubectl apply`
would have stored it, plus pods and nodes. This proves the live loader's calls and conversions
and the suite's verdicts; it does not prove anything about a real cluster's behaviour."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from mesh.deploy.sync import DEPLOY_DIR
from suites.kubechecks import ZONE_KEY
from suites.runner import run

NAMESPACE = "agentmesh"
_LISTS = {  # API path under the namespace -> kind served there
    "/apis/apps/v1/namespaces/{ns}/deployments": "Deployment",
    "/api/v1/namespaces/{ns}/services": "Service",
    "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets": "PodDisruptionBudget",
    "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies": "NetworkPolicy",
    "/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors": "ServiceMonitor",
    "/apis/monitoring.coreos.com/v1/namespaces/{ns}/prometheusrules": "PrometheusRule",
    "/api/v1/namespaces/{ns}/pods": "Pod",
    "/api/v1/nodes": "Node",
}


def _rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed"
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY_DIR / "overlays" / "production")],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _cluster(zones: str) -> list[dict[str, Any]]:
    nodes = [{"apiVersion": "v1", "kind": "Node",
              "metadata": {"name": f"node-{z}", "labels": {ZONE_KEY: f"eu-west-1{z}"}}}
             for z in sorted(set(zones))]
    pods = [{"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": f"agentmesh-{i}", "namespace": NAMESPACE},
             "spec": {"nodeName": f"node-{z}", "containers": [{"name": "mesh"}]},
             "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
            for i, z in enumerate(zones)]
    return [*nodes, *pods]


class FakeApiServer(ThreadingHTTPServer):
    objects: list[dict[str, Any]]
    missing: set[str]  # kinds whose API is not installed (404)


class _Handler(BaseHTTPRequestHandler):
    server: FakeApiServer

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        lists = {p.format(ns=NAMESPACE): kind for p, kind in _LISTS.items()}
        crd_prefix = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
        if path in lists and lists[path] not in self.server.missing:
            kind = lists[path]
            items = [o for o in self.server.objects if o["kind"] == kind]
            self._send(200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {},
                             "items": items})
        elif path.startswith(crd_prefix):
            name = path.removeprefix(crd_prefix)
            found = [o for o in self.server.objects if o["kind"] == "CustomResourceDefinition"
                     and o["metadata"]["name"] == name]
            if found:
                self._send(200, found[0])
            else:
                self._send(404, _status(404))
        else:
            self._send(404, _status(404))

    def _send(self, code: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _status(code: int) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": "NotFound", "message": "the server could not find the requested resource"}


@pytest.fixture
def api_server() -> Iterator[FakeApiServer]:
    server = FakeApiServer(("127.0.0.1", 0), _Handler)
    server.objects, server.missing = _rendered() + _cluster("abc"), set()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _suite(server: FakeApiServer, tmp_path: Path) -> Any:
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "other",
        "clusters": [{"name": "fake", "cluster": {
            "server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "sre", "user": {"token": "not-checked"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "sre"}},
                     {"name": "other", "context": {"cluster": "nowhere", "user": "sre"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    env = {**os.environ, "KUBECONFIG": str(path)}
    return run(["suites/test_kubernetes.py", "--kube-context", "fake", "--namespace", NAMESPACE],
               tmp_path / "junit.xml", env=env)


def test_the_production_overlay_as_served_by_an_api_passes_the_suite(
    api_server: FakeApiServer, tmp_path: Path
) -> None:
    result = _suite(api_server, tmp_path)
    assert result.returncode == 0, result.output
    assert set(result.outcomes().values()) == {"passed"} and len(result.cases) == 12


def test_replicas_crowded_into_two_zones_fail_the_suite(api_server: FakeApiServer,
                                                       tmp_path: Path) -> None:
    api_server.objects = _rendered() + _cluster("aab")
    result = _suite(api_server, tmp_path)
    failed = {c.name: c.message for c in result.cases if c.outcome == "failed"}
    assert list(failed) == ["test_three_ready_replicas_run_in_three_zones"]
    assert "run in 2 zones" in failed["test_three_ready_replicas_run_in_three_zones"]


def test_a_cluster_without_prometheus_operator_fails_with_a_note(api_server: FakeApiServer,
                                                                 tmp_path: Path) -> None:
    api_server.missing = {"ServiceMonitor", "PrometheusRule"}
    result = _suite(api_server, tmp_path)
    monitor = result.case("test_the_deployment_passes_the_check[service monitor]")
    assert monitor.outcome == "failed"
    assert "no ServiceMonitor" in monitor.message
    assert "is prometheus-operator installed?" in monitor.message
