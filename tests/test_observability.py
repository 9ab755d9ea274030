"""Logs and traces of a real mesh process: JSON lines with request and trace ids, and spans
exported over OTLP/HTTP to a collector stand-in when OTEL_EXPORTER_OTLP_ENDPOINT is set."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from mesh.process import MeshProcess

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class _Collector(BaseHTTPRequestHandler):
    spans: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                self.spans.extend((s.trace_id.hex(), s.name) for s in scope.spans)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_spans_are_exported_over_otlp_and_continue_the_callers_trace(
    collector: str, sqlite_url: str
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with MeshProcess(sqlite_url, env=env) as mesh:
        httpx.get(mesh.url + "/v1/agents", headers={"traceparent": TRACEPARENT})
        deadline = time.monotonic() + 10
        while (TRACE_ID, "GET /v1/agents") not in _Collector.spans:
            assert time.monotonic() < deadline, _Collector.spans
            time.sleep(0.1)


def test_logs_are_json_lines_with_request_and_trace_ids(sqlite_url: str) -> None:
    with MeshProcess(sqlite_url, env={"MESH_ACCESS_LOG": "true"}, zone="b") as mesh:
        httpx.get(mesh.url + "/v1/agents", headers={"traceparent": TRACEPARENT,
                                                    "x-request-id": "req-42"})
        time.sleep(0.2)
        assert mesh.log_path is not None
        lines = [json.loads(line) for line in Path(mesh.log_path).read_text().splitlines()]
    access = [e for e in lines if e.get("route") == "/v1/agents"]
    assert access, lines
    entry = access[0]
    assert (entry["request_id"], entry["trace_id"]) == ("req-42", TRACE_ID)
    assert (entry["zone"], entry["status"], entry["method"]) == ("b", 200, "GET")
