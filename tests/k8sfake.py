"""A hand-written fake of the few Kubernetes API endpoints the platform adapter uses, at the
HTTP edge: the official client talks to it over real HTTP, exactly as to an API server.

Objects are kept as wire JSON (camelCase), seeded from API objects in tests/testdata/k8s.
Label selectors support ``k=v`` terms only and field selectors ``spec.nodeName=`` only: any
other selector is answered 400, so a test cannot pass by the fake ignoring a filter. Created
Jobs are "run" by a kubelet the test supplies, which returns the pod's log and success.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeApiServer", "Kubelet", "load_objects"]

TESTDATA = Path(__file__).parent / "testdata" / "k8s"
Kubelet = Callable[[dict[str, Any]], tuple[bool, str]]


def load_objects(name: str) -> Any:
    return json.loads((TESTDATA / name).read_text())


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class BadSelector(ValueError):
    pass


def _labels_match(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj["metadata"].get("labels") or {}
    for term in selector.split(","):
        key, sep, value = term.partition("=")
        if not sep or key.endswith("!") or "=" in value:
            raise BadSelector(f"unsupported label selector term {term!r}")
        if labels.get(key) != value:
            return False
    return True


def _fields_match(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    key, _, value = selector.partition("=")
    if key != "spec.nodeName":
        raise BadSelector(f"unsupported field selector {selector!r}")
    return bool(obj.get("spec", {}).get("nodeName") == value)


class FakeApiServer:
    def __init__(self, kubelet: Kubelet | None = None) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, str] = {}
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.network_chaos: dict[str, dict[str, Any]] = {}  # Chaos Mesh objects, by name
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.content_types: list[str] = []  # of every request with a body
        self.kubelet = kubelet
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def seed(self, nodes: dict[str, Any], pods: dict[str, Any], namespace: dict[str, Any],
             deployment: dict[str, Any]) -> FakeApiServer:
        self.nodes = {n["metadata"]["name"]: n for n in copy.deepcopy(nodes["items"])}
        self.pods = {p["metadata"]["name"]: p for p in copy.deepcopy(pods["items"])}
        self.namespaces = {namespace["metadata"]["name"]: copy.deepcopy(namespace)}
        self.deployments = {deployment["metadata"]["name"]: copy.deepcopy(deployment)}
        return self

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls(self, method: str, pattern: str) -> list[tuple[str, dict[str, list[str]], Any]]:
        return [(p, q, b) for m, p, q, b in self.requests if m == method and re.search(pattern, p)]

    # -- routing ---------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict[str, list[str]],
               body: Any) -> tuple[int, Any]:
        one = {k: v[0] for k, v in query.items()}
        parts = path.strip("/").split("/")
        with self.lock:
            if path == "/api/v1/nodes" and method == "GET":
                selector = one.get("labelSelector")
                items = [n for n in self.nodes.values() if _labels_match(n, selector)]
                return 200, {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items}
            if parts[:3] == ["api", "v1", "nodes"] and len(parts) == 4 and method == "PATCH":
                node = self.nodes.get(parts[3])
                return (404, _status(404, parts[3])) if node is None else (200, _merge(node, body))
            if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 4 and method == "GET":
                found = self.namespaces.get(parts[3])
                return (404, _status(404, parts[3])) if found is None else (200, found)
            if parts[:3] == ["api", "v1", "namespaces"] and parts[4:5] == ["pods"]:
                return self._pods(method, parts, one)
            if parts[:2] == ["apis", "apps"] and parts[5:6] == ["deployments"] and method == "GET":
                found = self.deployments.get(parts[6])
                return (404, _status(404, parts[6])) if found is None else (200, found)
            if parts[:2] == ["apis", "batch"] and parts[5:6] == ["jobs"]:
                return self._jobs(method, parts, body)
            if parts[:2] == ["apis", "chaos-mesh.org"] and parts[5:6] == ["networkchaos"]:
                return self._network_chaos(method, parts, one, body)
        return 404, _status(404, path)

    def _network_chaos(self, method: str, parts: list[str], one: dict[str, str],
                       body: Any) -> tuple[int, Any]:
        store = self.network_chaos
        if len(parts) == 6 and method == "POST":
            name = body["metadata"]["name"]
            if name in store:
                return 409, _status(409, name)
            store[name] = copy.deepcopy(body)
            return 201, store[name]
        if len(parts) == 6 and method == "GET":
            items = [o for o in store.values() if _labels_match(o, one.get("labelSelector"))]
            return 200, {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaosList",
                         "metadata": {}, "items": items}
        if len(parts) == 7 and method == "DELETE":
            gone = store.pop(parts[6], None)
            return (404, _status(404, parts[6])) if gone is None else (200, gone)
        return 405, _status(405, "/".join(parts))

    def _pods(self, method: str, parts: list[str], one: dict[str, str]) -> tuple[int, Any]:
        ns = parts[3]
        if len(parts) == 5 and method == "GET":
            items = [p for p in self.pods.values() if p["metadata"].get("namespace") == ns
                     and _labels_match(p, one.get("labelSelector"))
                     and _fields_match(p, one.get("fieldSelector"))]
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        name = parts[5]
        if len(parts) == 7 and parts[6] == "log" and method == "GET":
            return 200, self.logs.get(name, "")
        if len(parts) == 6 and method == "DELETE":
            pod = self.pods.pop(name, None)
            return (404, _status(404, name)) if pod is None else (200, pod)
        return 405, _status(405, name)

    def _jobs(self, method: str, parts: list[str], body: Any) -> tuple[int, Any]:
        ns = parts[4]
        if len(parts) == 6 and method == "POST":
            job = copy.deepcopy(body)
            name = job["metadata"]["name"]
            job["metadata"]["namespace"] = ns
            self.jobs[name] = job
            ok, log = self.kubelet(job) if self.kubelet else (False, "no kubelet")
            pod = f"{name}-x7k2q"
            template = job["spec"]["template"]
            labels = {**template["metadata"].get("labels", {}), "job-name": name}
            self.pods[pod] = {"metadata": {"name": pod, "namespace": ns, "labels": labels},
                              "spec": copy.deepcopy(template["spec"]),
                              "status": {"phase": "Succeeded" if ok else "Failed"}}
            self.logs[pod] = log
            job["status"] = {"succeeded": 1} if ok else {"failed": 1}
            return 201, job
        name = parts[6]
        if name not in self.jobs:
            return 404, _status(404, name)
        if method == "GET":
            return 200, self.jobs[name]
        if method == "DELETE":
            return 200, self.jobs.pop(name)
        return 405, _status(405, name)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                query = parse_qs(split.query)
                fake.requests.append((method, split.path, query, body))
                if raw:
                    fake.content_types.append(self.headers.get("Content-Type", ""))
                try:
                    code, answer = fake._route(method, split.path, query, body)
                except BadSelector as exc:
                    code, answer = 400, _status(400, str(exc))
                text = answer if isinstance(answer, str) else json.dumps(answer)
                data = text.encode()
                self.send_response(code)
                ctype = "text/plain" if isinstance(answer, str) else "application/json"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _status(code: int, what: str) -> dict[str, Any]:
    reason = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed",
              409: "AlreadyExists"}[code]
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": f"{reason}: {what}", "reason": reason, "code": code}
