"""An SLO's SLI over the load test's window, from the mesh's own counters.

The catalog defines some SLIs *inside* the server (policy decision latency is timed around the
decision, not around HTTP). A client cannot measure that; the replicas' ``/metrics`` can. The
master scrapes every replica at the start and at the end of the run, and the SLI over the run
is the ratio of the counter increases, with the catalog's own selectors. Replicas must be
scraped one by one (a load balancer would mix them): with their URLs given, each is; with only
a host, ``host_target`` accepts ``HOST/metrics`` when it is one mesh process, which several
scrapes over fresh connections show by the same ``process_start_time_seconds``.

>>> snap = Snapshot.parse('x_bucket{le="0.005",policy="a"} 3\\nx_count{policy="a"} 4\\n')
>>> snap.total('x_bucket{le="0.005"}'), snap.total("x_count")
(3.0, 4.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtests.thresholds import parse_selector

__all__ = ["START_TIME", "Snapshot", "host_target", "increase", "scrape"]

START_TIME = "process_start_time_seconds"
# A family every mesh process exposes: what tells the mesh's /metrics from a proxy's.
MESH_FAMILY = "agentmesh_build_info"
IDENTITY_SCRAPES = 3


@dataclass(frozen=True)
class Snapshot:
    samples: tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        return cls(tuple((s.name, tuple(sorted(s.labels.items())), float(s.value))
                         for family in text_string_to_metric_families(text)
                         for s in family.samples))

    def total(self, selector: str) -> float:
        name, matchers = parse_selector(selector)
        return sum(value for sample, labels, value in self.samples if sample == name
                   and all(m.matches(dict(labels).get(m.label, "")) for m in matchers))


def scrape(urls: Iterable[str], timeout: float = 3.0) -> dict[str, Snapshot] | None:
    """Every replica's metrics, or None when any replica cannot be read (no partial SLI)."""
    snaps = {}
    try:
        for url in urls:
            r = httpx.get(url.rstrip("/") + "/metrics", timeout=timeout)
            if r.status_code != 200:
                return None
            snaps[url] = Snapshot.parse(r.text)
    except (httpx.HTTPError, ValueError):
        return None
    return snaps


def host_target(host: str, timeout: float = 3.0) -> tuple[list[str], str]:
    """([host], "") when HOST/metrics is the mesh's own, from one process; else ([], why not).
    Each scrape opens a new connection, so a load balancer would show another process."""
    starts = set()
    for _ in range(IDENTITY_SCRAPES):
        snaps = scrape([host], timeout)
        if snaps is None:
            return [], f"{host}/metrics could not be read"
        snap = snaps[host]
        if not snap.total(MESH_FAMILY):
            return [], f"{host}/metrics is not a mesh process's (no {MESH_FAMILY})"
        if not snap.total(START_TIME):
            return [], f"{host}/metrics has no {START_TIME}: one process cannot be told apart"
        starts.add(snap.total(START_TIME))
    if len(starts) > 1:
        return [], (f"{host}/metrics answered from {len(starts)} processes (a load balancer):"
                    " pass the replicas' URLs with --replicas")
    return [host], ""


def increase(before: dict[str, Snapshot], after: dict[str, Snapshot],
             selectors: Sequence[str]) -> list[float]:
    """Each selector's increase over the window, summed over replicas. A replica whose
    counter went down restarted during the run: its increase is the value after."""
    out = []
    for selector in selectors:
        total = 0.0
        for url, end in after.items():
            start = before.get(url)
            b, a = (start.total(selector) if start else 0.0), end.total(selector)
            total += a - b if a >= b else a
        out.append(total)
    return out
