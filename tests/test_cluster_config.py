"""The generated HAProxy, Prometheus and Alertmanager configs: deterministic, accepted by the
real tools, and HAProxy retries exactly the requests that are safe to send twice."""

from __future__ import annotations

import json
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from mesh.local import procs
from mesh.local.cluster import Cluster
from mesh.local.render import render_all
from mesh.local.spec import ClusterSpec, find_binary, plan
from mesh.local.state import ClusterState, Component, StateDir


@pytest.fixture
def planned(tmp_path: Path) -> tuple[ClusterState, StateDir, Path]:
    paths = StateDir(tmp_path / "state")
    paths.create()
    rules = tmp_path / "rules"
    rules.mkdir()
    return plan(ClusterSpec(base_port=0), paths), paths, rules


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_rendering_twice_gives_identical_files_headed_do_not_edit(planned) -> None:
    state, paths, rules = planned
    first = {p: p.read_bytes() for p in render_all(state, paths, rules)}
    second = {p: p.read_bytes() for p in render_all(state, paths, rules)}
    assert first == second
    assert len(first) == 5
    for path, text in first.items():
        if path.suffix != ".json":
            assert b"DO NOT EDIT" in text.splitlines()[0], path


def test_haproxy_accepts_its_config_and_lists_every_replica(planned) -> None:
    state, paths, rules = planned
    render_all(state, paths, rules)
    cfg = paths.config / "haproxy.cfg"
    done = _run(find_binary("haproxy"), "-c", "-f", str(cfg))
    assert done.returncode == 0, done.stdout + done.stderr
    text = cfg.read_text()
    for r in state.replicas():
        assert f"server {r.replica} {r.address} check" in text
    assert "option httpchk GET /health/ready" in text


def test_promtool_accepts_the_prometheus_config_and_loads_rule_files_from_alerts(
    planned,
) -> None:
    state, paths, rules = planned
    (rules / "slo.rules.yml").write_text(
        "groups:\n- name: g\n  rules:\n  - record: job:up:sum\n    expr: sum(up)\n"
    )
    render_all(state, paths, rules)
    done = _run("promtool", "check", "config", str(paths.config / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 rule files found" in done.stdout
    assert "slo.rules.yml" in done.stdout


def test_file_discovery_labels_each_replica_with_its_zone_and_replica(planned) -> None:
    state, paths, rules = planned
    render_all(state, paths, rules)
    groups = json.loads((paths.config / "targets" / "mesh.json").read_text())
    labels = sorted((g["labels"]["zone"], g["labels"]["replica"]) for g in groups)
    assert labels == [(z, f"{z}-{i}") for z in "abc" for i in range(2)]
    assert len({g["targets"][0] for g in groups}) == 6


def test_amtool_accepts_the_alertmanager_config_routing_to_the_webhook(planned) -> None:
    state, paths, rules = planned
    render_all(state, paths, rules)
    amtool = str(Path(find_binary("alertmanager")).with_name("amtool"))
    done = _run(amtool, "check-config", str(paths.config / "alertmanager.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    webhook = state.component("webhook")
    assert webhook is not None
    assert f"{webhook.url}/alerts" in (paths.config / "alertmanager.yml").read_text()


def test_without_a_component_its_config_and_scrape_job_are_left_out(tmp_path: Path) -> None:
    paths = StateDir(tmp_path)
    state = plan(ClusterSpec(base_port=0, without=frozenset({"alertmanager"})), paths)
    written = {p.name for p in render_all(state, paths, tmp_path)}
    assert "alertmanager.yml" not in written
    assert state.component("webhook") is None
    assert "alerting:" not in (paths.config / "prometheus.yml").read_text()


class _Backend(ThreadingHTTPServer):
    """A hand-written upstream: healthy for checks; 'flaky' ones close every other request
    without answering, as a replica killed mid-request does."""

    def __init__(self, flaky: bool) -> None:
        self.flaky = flaky
        self.seen: Counter[str] = Counter()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                if self.path != "/health/ready":
                    backend.seen[f"{self.command} {self.path}"] += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status = 200
                if backend.flaky and self.path.startswith("/answer/"):
                    status = int(self.path.split("/")[2])  # a replica's own error status
                elif backend.flaky and self.path != "/health/ready":
                    self.close_connection = True  # empty response
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = _handle

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # HAProxy resets health-check connections once it has read the status line


@pytest.fixture
def backends() -> Iterator[tuple[_Backend, _Backend]]:
    pair = (_Backend(flaky=True), _Backend(flaky=False))
    threads = [threading.Thread(target=b.serve_forever, daemon=True) for b in pair]
    for t in threads:
        t.start()
    yield pair
    for b in pair:
        b.shutdown()
        b.server_close()


def test_haproxy_retries_reads_on_another_replica_and_a_write_only_when_it_was_not_sent(
    tmp_path: Path, backends: tuple[_Backend, _Backend]
) -> None:
    flaky, good = backends
    paths = StateDir(tmp_path)
    state = plan(ClusterSpec(zones=("a", "b"), replicas_per_zone=1, base_port=0,
                             without=frozenset({"prometheus", "alertmanager"})), paths)
    for replica, backend in zip(state.replicas(), (flaky, good), strict=True):
        replica.host, replica.port = backend.server_address[0], backend.server_address[1]
    haproxy = state.component("haproxy")
    assert isinstance(haproxy, Component)
    render_all(state, paths, tmp_path)
    cluster = Cluster(paths)
    cluster.start(state, [haproxy], timeout=10)
    try:
        with httpx.Client(base_url=haproxy.url, timeout=5, trust_env=False) as client:
            reads = [client.get("/v1/agents/x").status_code for _ in range(20)]
            verifies = [client.post("/v1/credentials/verify", json={}).status_code
                        for _ in range(10)]
            writes = [client.post("/v1/agents", json={}).status_code for _ in range(20)]
            # A 503 promises nothing was sent to the stores: the write goes elsewhere. A 504
            # admits a write may have been applied: it is the client's to see.
            unsent = [client.post("/answer/503", json={}).status_code for _ in range(10)]
            unknown = [client.post("/answer/504", json={}).status_code for _ in range(10)]
    finally:
        procs.stop(cluster_proc := procs.Proc(haproxy.pid or 0, haproxy.start_ticks or 0))
    assert not procs.alive(cluster_proc)
    assert reads == [200] * 20 and flaky.seen["GET /v1/agents/x"] > 0
    assert verifies == [200] * 10 and flaky.seen["POST /v1/credentials/verify"] > 0
    failed_writes = writes.count(502)
    assert failed_writes > 0 and writes.count(200) == 20 - failed_writes
    # Each failed write reached the flaky replica exactly once: no resend anywhere.
    assert flaky.seen["POST /v1/agents"] == failed_writes
    assert good.seen["POST /v1/agents"] == 20 - failed_writes
    assert unsent == [200] * 10 and flaky.seen["POST /answer/503"] > 0
    assert unknown.count(504) == flaky.seen["POST /answer/504"] > 0
    assert unknown.count(200) == good.seen["POST /answer/504"] == 10 - unknown.count(504)
