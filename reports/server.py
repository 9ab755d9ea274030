"""The server's view of a run: the SLO catalog's own SLIs, asked of Prometheus over the run.

Counts over a window are ``increase()`` evaluated at the window's end with a range exactly as
long as the window, so a replica that was killed and restarted (its counters reset) is still
counted whole. Series for the charts use a short rate window (``rate_window``, at least a few
scrape intervals) on a step of about 200 points over the span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alerts.catalog import CATALOG, SLO
from reports.prom import Prom, Series

__all__ = ["USER_REQUESTS", "Counts", "ServerView", "catalog_slo"]

# Requests of users (probes and scrapes excluded), exactly as the API availability SLO counts.
USER_REQUESTS = next(s.sli.total for s in CATALOG if s.id == "api-availability")
USER_BUCKETS = USER_REQUESTS.replace("_count{", "_bucket{", 1)
_PROPAGATION_BUCKETS = "agentmesh_revocation_propagation_seconds_bucket"
MAX_POINTS = 200


def catalog_slo(slo_id: str) -> SLO:
    return next(s for s in CATALOG if s.id == slo_id)


@dataclass(frozen=True)
class Counts:
    bad: float
    total: float

    @property
    def good_ratio(self) -> float | None:
        return 1 - self.bad / self.total if self.total > 0 else None

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.bad + other.bad, self.total + other.total)


class ServerView:
    def __init__(self, prom: Prom, start: float, end: float, rate_window: float = 15.0) -> None:
        self.prom, self.start, self.end = prom, start, end
        span = max(end - start, 1.0)
        self.step = max(1.0, round(span / MAX_POINTS))
        self.rate_window = Prom.window(max(rate_window, 3 * self.step))

    def counts(self, slo: SLO, start: float, end: float) -> Counts:
        """Bad and total events of one SLO between ``start`` and ``end``, counted as the
        recorded SLI counts them (a replica without a histogram SLI's bucket is left out)."""
        window = Prom.window(end - start)
        total = self.prom.scalar(slo.sli.events(window), end) or 0.0
        bad = self.prom.scalar(slo.sli.bad_events(window), end) or 0.0
        return Counts(max(bad, 0.0), total)

    def counts_over(self, slo: SLO, windows: Sequence[tuple[float, float]]) -> Counts:
        out = Counts(0.0, 0.0)
        for start, end in windows:
            out = out + self.counts(slo, start, end)
        return out

    def _range(self, query: str) -> list[Series]:
        return self.prom.matrix(query, self.start, self.end, self.step)

    def availability(self) -> list[Series]:
        ratio = catalog_slo("api-availability").sli.error_ratio(self.rate_window)
        return self._range(f"1 - ({ratio})")

    def burn_rates(self, window: str = "1m") -> dict[str, list[tuple[float, float]]]:
        """Each SLO's burn rate (error ratio over ``window`` / error budget) across the run."""
        out = {}
        for slo in CATALOG:
            series = self._range(f"({slo.sli.error_ratio(window)}) / {slo.error_budget!r}")
            out[slo.id] = series[0].points if series else []
        return out

    def latency(self, quantiles: Sequence[float] = (0.5, 0.99)) -> dict[str, list[Series]]:
        """Server-side request latency quantiles (ms) of user routes across the run."""
        out = {}
        for q in quantiles:
            query = (f"1000 * histogram_quantile({q}, sum by (le)"
                     f" (rate({USER_BUCKETS}[{self.rate_window}])))")
            out[f"p{q * 100:g}"] = self._range(query)
        return out

    def latency_between(self, start: float, end: float, q: float) -> float | None:
        """One quantile (ms) of user request latency over a window, from the histogram."""
        query = (f"1000 * histogram_quantile({q}, sum by (le)"
                 f" (increase({USER_BUCKETS}[{Prom.window(end - start)}])))")
        return self.prom.scalar(query, end)

    def requests_by_zone(self) -> list[Series]:
        return self._range(f"sum by (zone) (rate({USER_REQUESTS}[{self.rate_window}]))")

    def requests_by_zone_total(self) -> dict[str, float]:
        window = Prom.window(self.end - self.start)
        rows = self.prom.vector(f"sum by (zone) (increase({USER_REQUESTS}[{window}]))", self.end)
        return {labels.get("zone", ""): value for labels, value in rows}

    def propagation_buckets(self) -> list[tuple[float, float]]:
        """(le seconds, cumulative count) of the mesh's revocation propagation histogram."""
        window = Prom.window(self.end - self.start)
        rows = self.prom.vector(f"sum by (le) (increase({_PROPAGATION_BUCKETS}[{window}]))",
                                self.end)
        return sorted((float(labels["le"]), value) for labels, value in rows)

    def alerts(self) -> list[Series]:
        """Prometheus's own ``ALERTS`` series: when each alert was pending or firing."""
        return self._range("ALERTS")

    def intervals(self) -> dict[str, float]:
        """This Prometheus's scrape and rule evaluation intervals, from its own metrics (it
        must scrape itself); empty when it does not say."""
        scrape = self.prom.scalar(
            'max(prometheus_target_interval_length_seconds{quantile="0.5"})', self.end)
        evaluation = self.prom.scalar("max(prometheus_rule_group_interval_seconds)", self.end)
        if scrape is None or evaluation is None:
            return {}
        return {"scrape_s": round(scrape, 2), "evaluation_s": round(evaluation, 2)}
