"""Prometheus queries for the report: instant and range queries pinned to the run's span.

Every query names an explicit evaluation time, so a report built the next morning (or from a
Prometheus restored from backup) reads the same figures as one built the moment the run ended.
Third-party errors become one ``PrometheusError`` with the query in its message.

>>> Prom("http://127.0.0.1:1").window(10.2)
'11s'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests import RequestException
from urllib3.util.retry import Retry

__all__ = ["Prom", "PrometheusError", "Series"]


class PrometheusError(RuntimeError):
    """Prometheus could not answer a query (down, or the query is wrong)."""


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix time, value); NaN and Inf are dropped


def _value(raw: Any) -> float | None:
    value = float(raw)
    return value if math.isfinite(value) else None


class Prom:
    def __init__(self, url: str, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        # POST: long PromQL never hits a URL length limit; one quick retry, not the default
        # backoff that would stall a report for a minute when Prometheus is simply gone.
        self._client = PrometheusConnect(url=self.url, disable_ssl=True, timeout=timeout,
                                         retry=Retry(total=1, backoff_factor=0.2),
                                         method="POST")
        self._timeout = timeout

    @staticmethod
    def window(seconds: float) -> str:
        """A PromQL range covering ``seconds``, rounded up to a whole second."""
        return f"{max(1, math.ceil(seconds))}s"

    def _call(self, what: str, query: str, **params: Any) -> Any:
        try:
            if what == "range":
                return self._client.custom_query_range(
                    query, params={"timeout": f"{self._timeout:g}s"}, **params)
            return self._client.custom_query(query, params={"timeout": f"{self._timeout:g}s",
                                                            **params})
        except (PrometheusApiClientException, RequestException, ValueError) as exc:
            raise PrometheusError(f"prometheus at {self.url}: {query!r}: {exc}") from exc

    def ready(self) -> bool:
        try:
            self._call("instant", "vector(1)")
        except PrometheusError:
            return False
        return True

    def vector(self, query: str, at: float) -> list[tuple[dict[str, str], float]]:
        """An instant query at ``at``; samples whose value is NaN or Inf are left out."""
        out = []
        for sample in self._call("instant", query, time=f"{at:.3f}"):
            value = _value(sample["value"][1])
            if value is not None:
                out.append((dict(sample["metric"]), value))
        return out

    def scalar(self, query: str, at: float) -> float | None:
        """The single value of an instant query, None when it has no (finite) sample."""
        values = self.vector(query, at)
        return values[0][1] if values else None

    def matrix(self, query: str, start: float, end: float, step: float) -> list[Series]:
        result = self._call("range", query,
                            start_time=datetime.fromtimestamp(start, UTC),
                            end_time=datetime.fromtimestamp(end, UTC), step=f"{step:g}s")
        out = []
        for series in result:
            points = [(float(t), v) for t, raw in series["values"]
                      if (v := _value(raw)) is not None]
            out.append(Series(dict(series["metric"]), points))
        return sorted(out, key=lambda s: sorted(s.labels.items()))
