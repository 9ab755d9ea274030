"""What the security suite does to a live mesh, as a hostile client would: hold slow-body
connections open, flood from one address, and time a normal client meanwhile. Every attack is
bounded in time and stops by itself; sockets are closed whatever happens."""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from alerts.catalog import CATALOG
from suites.prom import Prometheus

__all__ = [
    "SlowBodies",
    "Timings",
    "decision_sli_from_prometheus",
    "decision_slo",
    "flood",
    "percentile",
]


def decision_slo() -> tuple[float, float]:
    """(threshold in seconds, objective as a ratio) of the policy-decision latency SLO."""
    slo = next(s for s in CATALOG if s.id == "policy-decision-latency")
    match = re.search(r'le="([0-9.]+)"', slo.sli.good)
    assert match, slo.sli.good
    return float(match.group(1)), slo.ratio


def decision_sli_from_prometheus(url: str, seconds: float) -> float | None:
    """The decision-latency SLI (good over total, the catalog's own selectors) over the last
    ``seconds`` and the scrapes around them, once Prometheus has scraped after them."""
    slo = next(s for s in CATALOG if s.id == "policy-decision-latency")
    prom = Prometheus(url)
    try:
        scrape, _ = prom.intervals()
        time.sleep(scrape + 1)
        window = math.ceil(seconds + 2 * scrape)
        result = prom.query(f"sum(increase({slo.sli.good}[{window}s]))"
                            f" / sum(increase({slo.sli.total}[{window}s]))")
    finally:
        prom.close()
    return float(result[0]["value"][1]) if result else None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, q in 0..100."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class Timings:
    """A normal client's answers: status codes, and latencies in seconds by kind."""

    statuses: list[int] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def add(self, kind: str, status: int, seconds: float) -> None:
        self.statuses.append(status)
        self.latencies.setdefault(kind, []).append(seconds)

    def failures(self) -> list[int]:
        return [s for s in self.statuses if not 200 <= s < 300]

    def within(self, kind: str, threshold: float) -> float:
        values = self.latencies.get(kind, [])
        return sum(v <= threshold for v in values) / len(values) if values else 0.0

    def p99_ms(self, kind: str) -> float:
        return round(percentile(self.latencies[kind], 99) * 1000, 3)


class SlowBodies:
    """``count`` requests whose head arrives at once and whose body trickles in one byte a
    second, kept at ``count`` for as long as the context lasts: a connection the server
    closes (a 408, as it should) is opened again, as an attacker would. They are held by a
    process of their own, so that they take nothing from the timing of this one."""

    def __init__(self, url: str, count: int, path: str = "/v1/agents") -> None:
        parts = urlsplit(url)
        self.count = count
        context = multiprocessing.get_context("spawn")
        self._open = context.Value("i", 0)
        self._stop = context.Event()
        self._process = context.Process(
            target=_hold, name="slow-bodies", daemon=True,
            args=(parts.hostname or "127.0.0.1", parts.port or 80, path, count, self._open,
                  self._stop))

    @property
    def open_now(self) -> int:
        return int(self._open.value)

    def __enter__(self) -> SlowBodies:
        self._process.start()
        deadline = time.monotonic() + 15
        while self.open_now < self.count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _hold(host: str, port: int, path: str, count: int, opened: Any, stop: Any) -> None:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Content-Length: 4096\r\n\r\n{").encode()

    async def one(index: int) -> None:
        await asyncio.sleep(index * 0.005)  # 300 in 1.5 s: an attack, not a burst to refuse
        while True:
            writer = None
            try:
                reader, writer = await asyncio.open_connection(host, port)
                with opened.get_lock():
                    opened.value += 1
                writer.write(head)
                await writer.drain()
                while not reader.at_eof():
                    with contextlib.suppress(TimeoutError):
                        if await asyncio.wait_for(reader.read(65536), 1.0):
                            break  # answered (a 408): hang up and come again
                    writer.write(b" ")
                    await writer.drain()
            except OSError:
                await asyncio.sleep(0.2)
            finally:
                if writer is not None:
                    with opened.get_lock():
                        opened.value -= 1
                    writer.close()

    async def main() -> None:
        tasks = [asyncio.create_task(one(i)) for i in range(count)]
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def flood(send: Callable[[], httpx.Response], total: int, rate: float,
          threads: int = 4) -> list[httpx.Response]:
    """``total`` requests at about ``rate`` a second from this one client address."""
    answers: list[httpx.Response] = []
    per_thread, gap = total // threads, threads / rate
    started = time.monotonic()

    def worker() -> None:
        for n in range(per_thread):
            delay = started + n * gap - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with contextlib.suppress(httpx.HTTPError):
                answers.append(send())

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=total / rate + 30)
    return answers
