"""A small client for the Prometheus and Alertmanager HTTP APIs, over httpx: the suites need
targets, rules, configuration and alertmanagers, which query-only clients do not cover."""

from __future__ import annotations

import re
from typing import Any

import httpx
import yaml

__all__ = ["Alertmanager", "Prometheus", "PrometheusError", "duration_seconds"]

_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class PrometheusError(RuntimeError):
    """The API answered, but not with data (bad query, not Prometheus at all...)."""


def duration_seconds(text: str) -> float:
    """A Prometheus duration such as ``15s`` or ``1m30s``, in seconds."""
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT[u] for n, u in parts)


class Prometheus:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def api(self, path: str, **params: str) -> Any:
        try:
            r = self.http.get(f"/api/v1/{path}", params=params)
            body = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"{self.url}/api/v1/{path}: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"{path}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def active_targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return targets

    def rule_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self.api("rules")["groups"]
        return groups

    def intervals(self) -> tuple[float, float]:
        """The global scrape and evaluation intervals, in seconds."""
        config = yaml.safe_load(self.api("status/config")["yaml"]) or {}
        glob = config.get("global", {})
        return (duration_seconds(glob.get("scrape_interval", "1m")),
                duration_seconds(glob.get("evaluation_interval", "1m")))


class Alertmanager:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def ready(self) -> bool:
        try:
            return self.http.get("/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def config(self) -> dict[str, Any]:
        status = self.http.get("/api/v2/status")
        status.raise_for_status()
        config: dict[str, Any] = yaml.safe_load(status.json()["config"]["original"]) or {}
        return config
