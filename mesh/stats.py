"""Scrape-time metrics read from the shared store: registry size, the trust score
distribution over tiers, and the newest backup. Cached briefly so that frequent scrapes from
several Prometheus servers cost one aggregate query every few seconds at most."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mesh.telemetry import TRUST_BUCKETS, spec

if TYPE_CHECKING:
    from mesh.store import Store

__all__ = ["StoreCollector"]


class StoreCollector(Collector):
    def __init__(self, store: Store, max_age_s: float = 5.0) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self._stats: dict[str, Any] | None = None
        self._at = 0.0

    async def refresh(self) -> None:
        if self._at and time.monotonic() - self._at <= self.max_age_s:
            return
        from mesh.store import records

        # Timed from the attempt: a dead store costs one scrape its timeout every max_age_s,
        # not every scrape (the stats stay stale meanwhile).
        self._at = time.monotonic()
        self._stats = await self.store.call("stats", records.stats)

    def collect(self) -> Iterator[Metric]:
        # Stats come from refresh(), awaited by the /metrics handler; never query here, because
        # collect() runs synchronously inside the event loop.
        stats = self._stats
        if stats is None:
            return
        size = spec("agentmesh_registry_size")
        yield GaugeMetricFamily(size.name, size.help, value=stats["count"])
        trust = spec("agentmesh_trust_score")
        buckets = [(str(b), c) for b, c in zip(TRUST_BUCKETS, stats["cumulative"], strict=True)]
        buckets.append(("+Inf", stats["count"]))
        yield GaugeHistogramMetricFamily(
            trust.name, trust.help, buckets=buckets, gsum_value=stats["sum"]
        )
        backup = spec("agentmesh_backup_last_success_timestamp_seconds")
        yield GaugeMetricFamily(backup.name, backup.help, value=stats["last_backup"])

    def describe(self) -> Iterator[Metric]:
        return iter(())
