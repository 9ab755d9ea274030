"""Progress of the nightly job on the terminal: which stage, how long since the start, and a few
live figures from Prometheus every few seconds while a stage runs.

    [nightly 1:42 az-failure] 19.8 req/s, 5xx 0.00%, p99 11.2 ms, replicas 2/3 up, firing ...

The figures are the server's view (the same Prometheus the report reads), so they work the
same against the local cluster and a real one. A Prometheus that does not answer makes the
line say so; it never stops the job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from reports.prom import Prom, PrometheusError
from reports.server import USER_BUCKETS, USER_REQUESTS, catalog_slo

__all__ = ["Progress"]

_WINDOW = "15s"


def live_line(prom: Prom, at: float) -> str:
    """One line of live figures, or why there are none."""
    try:
        rps = prom.scalar(f"sum(rate({USER_REQUESTS}[{_WINDOW}]))", at)
        ratio = prom.scalar(catalog_slo("api-availability").sli.error_ratio(_WINDOW), at)
        p99 = prom.scalar(f"1000 * histogram_quantile(0.99, sum by (le)"
                          f" (rate({USER_BUCKETS}[{_WINDOW}])))", at)
        up = prom.scalar('sum(up{job="mesh"})', at)
        total = prom.scalar('count(up{job="mesh"})', at)
        firing = sorted({labels.get("alertname", "") for labels, _ in prom.vector(
            'ALERTS{alertstate="firing", severity!="none"}', at)})
    except PrometheusError:
        return "prometheus does not answer"
    parts = [f"{rps or 0:.1f} req/s",
             "5xx n/a" if ratio is None else f"5xx {ratio:.2%}",
             "p99 n/a" if p99 is None else f"p99 {p99:.1f} ms"]
    if total:
        parts.append(f"replicas {up or 0:.0f}/{total:.0f} up")
    parts.append(f"firing {', '.join(firing)}" if firing else "no alert firing")
    return ", ".join(parts)


class Progress:
    def __init__(self, every: float, prom: Prom | None = None,
                 echo: Callable[[str], None] = print) -> None:
        self.started = time.monotonic()
        self.every, self.prom, self.echo = every, prom, echo
        self.stage = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def clock(self) -> str:
        s = int(time.monotonic() - self.started)
        return f"{s // 60}:{s % 60:02d}"

    def say(self, text: str) -> None:
        where = f" {self.stage}" if self.stage else ""
        self.echo(f"[nightly {self.clock()}{where}] {text}")

    def begin(self, stage: str, what: str) -> None:
        self.stage = stage
        self.say(f"start: {what}")
        if self.prom is not None and self.every > 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()

    def end(self, text: str) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.say(text)
        self.stage = ""

    def _poll(self) -> None:
        assert self.prom is not None
        while not self._stop.wait(self.every):
            self.say(live_line(self.prom, time.time()))
