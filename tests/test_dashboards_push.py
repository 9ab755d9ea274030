"""`meshsre dashboards push` against a small fake Grafana on a loopback port.

There is no Grafana on this machine; the fake implements the three endpoints push uses, with
Grafana's status codes and error bodies, and records what it received.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from dashboards.build import all_dashboards
from dashboards.cli import dashboards

EDITOR, VIEWER, BROKEN = "editor-token", "viewer-token", "broken-token"


@dataclass
class FakeGrafana:
    url: str = ""
    folders: list[dict[str, str]] = field(
        default_factory=lambda: [{"uid": "f-existing", "title": "Existing"}])
    boards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)


def _handler(state: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: object, content_type: str = "application/json"
                    ) -> None:
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            state.requests.append((method, self.path, body))
            if self.path.startswith("/html/"):
                return self._answer(200, "<html>not grafana</html>", "text/html")
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if token not in (EDITOR, VIEWER, BROKEN):
                return self._answer(401, {"message": "invalid API key"})
            if token == VIEWER and method == "POST":
                return self._answer(403, {"message": "You'll need additional permissions"})
            if token == BROKEN:
                return self._answer(500, {"message": "database is locked"})
            route = (method, self.path.split("?")[0])
            if route == ("GET", "/api/folders"):
                return self._answer(200, state.folders)
            if route == ("POST", "/api/folders"):
                folder = {"uid": f"f-{len(state.folders)}", "title": body["title"]}
                state.folders.append(folder)
                return self._answer(200, folder)
            if route == ("POST", "/api/dashboards/db"):
                board = body["dashboard"]
                if not board.get("title") or board.get("id") is not None:
                    return self._answer(400, {"message": "Dashboard title cannot be empty"})
                state.boards[board["uid"]] = body
                return self._answer(200, {"id": len(state.boards), "uid": board["uid"],
                                          "status": "success", "version": 1,
                                          "url": f"/d/{board['uid']}/x"})
            return self._answer(404, {"message": "Not found"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    state = FakeGrafana()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval keeps shutdown() (and so each test's teardown) fast.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _push(*args: str) -> Any:
    return CliRunner().invoke(dashboards, ["push", *args])


def test_push_creates_the_folder_and_uploads_every_dashboard_into_it(grafana: FakeGrafana
                                                                     ) -> None:
    result = _push("--grafana-url", grafana.url + "/", "--token", EDITOR, "--folder", "meshsre")
    assert result.exit_code == 0, result.output
    assert grafana.folders[-1] == {"uid": "f-1", "title": "meshsre"}
    expected = all_dashboards()
    assert list(grafana.boards) == [b["uid"] for b in expected]
    for board in expected:
        sent = grafana.boards[board["uid"]]
        assert sent["dashboard"] == board
        assert (sent["folderUid"], sent["overwrite"]) == ("f-1", True)
    assert f"meshsre-slos: success version 1 {grafana.url}/d/meshsre-slos/x" in result.output


def test_push_reuses_a_folder_that_exists(grafana: FakeGrafana) -> None:
    result = _push("--grafana-url", grafana.url, "--token", EDITOR, "--folder", "Existing")
    assert result.exit_code == 0, result.output
    assert not any(m == "POST" and p == "/api/folders" for m, p, _ in grafana.requests)
    assert {b["folderUid"] for b in grafana.boards.values()} == {"f-existing"}


def test_push_without_a_folder_targets_the_general_folder(grafana: FakeGrafana) -> None:
    result = _push("--grafana-url", grafana.url, "--token", EDITOR)
    assert result.exit_code == 0, result.output
    assert [p for _, p, _ in grafana.requests] == ["/api/dashboards/db"] * 4
    assert all("folderUid" not in b for b in grafana.boards.values())


@pytest.mark.parametrize(("token", "message"), [
    ("wrong", "refused the token (401 unauthorized): check --token or GRAFANA_TOKEN"),
    (VIEWER, "forbids POST /api/dashboards/db with this token (403 forbidden): it needs the"
             " Editor role or dashboards:write"),
    (BROKEN, "answered 500 to GET /api/folders?limit=1000: database is locked"),
])
def test_push_turns_grafana_refusals_into_one_line(grafana: FakeGrafana, token: str,
                                                   message: str) -> None:
    result = _push("--grafana-url", grafana.url, "--token", token, "--folder", "Existing")
    assert result.exit_code == 1
    assert result.output == f"Error: grafana at {grafana.url} {message}\n"
    assert grafana.boards == {}


def test_push_says_when_the_url_is_not_a_grafana(grafana: FakeGrafana) -> None:
    result = _push("--grafana-url", grafana.url + "/html", "--token", EDITOR)
    assert result.exit_code == 1
    assert result.output == (f"Error: {grafana.url}/html did not answer POST /api/dashboards/db"
                             " with JSON: is --grafana-url a Grafana?\n")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_meshsre_command_reports_an_unreachable_grafana_in_one_line() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    proc = subprocess.run(
        [sys.executable, "-c", "from meshsre.cli import main; main()", "dashboards", "push",
         "--grafana-url", url, "--token", EDITOR],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"Error: cannot reach grafana at {url}: ")
    assert proc.stderr.count("\n") == 1


def test_push_rejects_a_url_without_a_scheme() -> None:
    result = _push("--grafana-url", "grafana:3000", "--token", EDITOR)
    assert result.exit_code == 1
    assert "must start with http:// or https://" in result.output
