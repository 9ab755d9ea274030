"""Upload dashboards through Grafana's HTTP API (``/api/folders``, ``/api/dashboards/db``).

Every failure becomes one ``GrafanaError`` whose message is a single line a human can act on;
the CLI prints it without a traceback.

>>> Grafana("http://127.0.0.1:3000/", "token").url
'http://127.0.0.1:3000'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

__all__ = ["Grafana", "GrafanaError", "push_all"]

_PUSH_MESSAGE = "meshsre dashboards push"


class GrafanaError(Exception):
    """Grafana unreachable, the token refused, or Grafana rejecting a request."""


class Grafana:
    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise GrafanaError(f"grafana url must start with http:// or https://, got {url!r}")
        self._client = httpx.Client(
            base_url=self.url, timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    def __enter__(self) -> Grafana:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            resp = self._client.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise GrafanaError(f"grafana at {self.url} did not answer {method} {path} in "
                               f"time") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise GrafanaError(f"cannot reach grafana at {self.url}: {exc}") from exc
        if resp.status_code == 401:
            raise GrafanaError(f"grafana at {self.url} refused the token (401 unauthorized):"
                               " check --token or GRAFANA_TOKEN")
        if resp.status_code == 403:
            raise GrafanaError(f"grafana at {self.url} forbids {method} {path} with this token"
                               " (403 forbidden): it needs the Editor role or dashboards:write")
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code >= 400:
            detail = data.get("message") if isinstance(data, dict) else None
            raise GrafanaError(f"grafana at {self.url} answered {resp.status_code} to {method} "
                               f"{path}: {detail or resp.reason_phrase}")
        if data is None:
            raise GrafanaError(f"{self.url} did not answer {method} {path} with JSON: "
                               "is --grafana-url a Grafana?")
        return data

    def folder_uid(self, title: str) -> str:
        """The uid of the folder titled ``title``, created when it does not exist yet."""
        folders = self._call("GET", "/api/folders?limit=1000")
        for folder in folders if isinstance(folders, list) else ():
            if folder.get("title") == title:
                return str(folder["uid"])
        created = self._call("POST", "/api/folders", {"title": title})
        return str(created["uid"])

    def push(self, board: dict[str, Any], folder_uid: str | None = None) -> dict[str, Any]:
        """Create or replace ``board`` (matched by uid); returns Grafana's answer."""
        body: dict[str, Any] = {"dashboard": board, "overwrite": True, "message": _PUSH_MESSAGE}
        if folder_uid:
            body["folderUid"] = folder_uid
        answer: dict[str, Any] = self._call("POST", "/api/dashboards/db", body)
        return answer


def push_all(url: str, token: str, boards: Iterable[dict[str, Any]], *,
             folder: str | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Push every dashboard into ``folder`` (the General folder when None)."""
    with Grafana(url, token, timeout=timeout) as grafana:
        folder_uid = grafana.folder_uid(folder) if folder else None
        return [grafana.push(board, folder_uid) for board in boards]
