"""Alertmanager webhook receiver: appends every alert of every notification to a JSON Lines file.

Drills read time to detect from this file (first line with a given alert name and status
"firing"), so each line carries the time we received it next to Alertmanager's own startsAt.
Standard library only: it starts in a few tens of milliseconds and has nothing to fail.

Run it as ``python -m mesh.local.webhook --port 19094 --out .meshsre/alerts.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["lines_for", "main", "make_server", "read_alerts"]

_MAX_BODY = 4 * 1024 * 1024


def lines_for(notification: dict[str, Any], received_at: float) -> list[dict[str, Any]]:
    """One record per alert of an Alertmanager webhook notification (payload version 4)."""
    records = []
    for alert in notification.get("alerts") or []:
        labels = alert.get("labels") or {}
        records.append(
            {
                "received_at": round(received_at, 6),
                "name": labels.get("alertname", ""),
                "status": alert.get("status", notification.get("status", "")),
                "labels": labels,
                "annotations": alert.get("annotations") or {},
                "startsAt": alert.get("startsAt"),
                "endsAt": alert.get("endsAt"),
                "fingerprint": alert.get("fingerprint"),
                "receiver": notification.get("receiver"),
                "groupKey": notification.get("groupKey"),
            }
        )
    return records


def read_alerts(path: Path | str) -> list[dict[str, Any]]:
    """Every record in a webhook file, oldest first (a missing file has none)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def make_server(host: str, port: int, out: Path) -> ThreadingHTTPServer:
    lock = threading.Lock()
    out.parent.mkdir(parents=True, exist_ok=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, {"status": "ok"})
            else:
                self._reply(404, {"error": "not_found"})

        def do_POST(self) -> None:
            received_at = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/alerts" or not 0 < length <= _MAX_BODY:
                self._reply(400, {"error": "bad_request"})
                return
            try:
                notification = json.loads(self.rfile.read(length))
                records = lines_for(notification, received_at)
            except (ValueError, AttributeError, TypeError):
                self._reply(400, {"error": "not_a_notification"})
                return
            text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
            with lock, open(out, "a") as fh:
                fh.write(text)  # one write per notification: readers never see half of one
            self._reply(200, {"appended": len(records)})

        def _reply(self, code: int, body: dict[str, object]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the JSON Lines file is the log

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, args.out)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
