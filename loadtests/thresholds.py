"""Pass/fail thresholds of a load test, derived from the SLO catalog, never typed twice.

Each SLO's SLI is a pair of PromQL selectors over the telemetry contract; the same selectors
say which requests a load test must count and what makes one bad:

- an ``errors=`` SLI becomes an error-ratio threshold: requests on the selector's routes and
  methods, bad when the status matches its ``code`` matcher (or when no answer came at all),
  at most the error budget (0.1% for 99.9%);
- a ``good=`` SLI on a latency histogram bucket becomes a latency threshold: at least the
  objective's share (99%) of that route's requests within the bucket's ``le`` (5 ms), which is
  "p99 under 5 ms" said exactly. Judged on the mesh's own histogram over the run when every
  replica's /metrics can be scraped (the SLI is timed inside the server), else on the
  client's service time (HTTP, network and the generator included: stricter), with the
  client's own overhead beside it, measured on a request the server does no work for;
- the revocation-propagation SLI is checked on the revocation probe's measured delays.

>>> [t.id for t in derive()][:2]
['api-availability', 'registration-availability']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import promql_parser

from alerts.catalog import CATALOG, SLO
from loadtests.histogram import Histogram
from loadtests.recorder import Cell

__all__ = ["Matcher", "ServerSLI", "Threshold", "Verdict", "derive", "evaluate", "parse_selector"]

Kind = Literal["error_ratio", "latency", "propagation"]
# (good selector, total selector) -> their increases over the run, from the mesh's /metrics.
ServerSLI = Callable[[str, str], tuple[float, float]]
# Histograms the load test can observe from the client side, and the requests they time.
_LATENCY_SCOPES = {
    "agentmesh_policy_decision_duration_seconds": {"route": "/v1/policy/decide",
                                                   "method": "POST"},
    "agentmesh_api_request_duration_seconds": {},
}
_PROPAGATION = "agentmesh_revocation_propagation_seconds"
# The workload's request that does no work in the server: its client time is what HTTP, the
# network and the generator itself add to every client timing.
OVERHEAD_ROUTE = "GET /health/live"


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # =, !=, =~, !~
    value: str

    def matches(self, value: str) -> bool:
        if self.op in ("=", "!="):
            return (value == self.value) == (self.op == "=")
        return (re.fullmatch(self.value, value) is not None) == (self.op == "=~")

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def parse_selector(selector: str) -> tuple[str, tuple[Matcher, ...]]:
    """Metric name and label matchers of a plain selector such as ``m{route="/x"}``."""
    node = promql_parser.parse(selector)
    if not isinstance(node, promql_parser.VectorSelector):
        raise ValueError(f"not a plain metric selector: {selector!r}")
    matchers = tuple(Matcher(m.name, _OPS[str(m.op).rsplit(".", 1)[-1]], m.value)
                     for m in node.matchers.matchers)
    return node.name or "", matchers


@dataclass(frozen=True)
class Threshold:
    id: str  # the SLO's id
    kind: Kind
    limit: float  # error_ratio: at most this ratio; otherwise: at least this share good
    scope: tuple[Matcher, ...] = ()  # on route and method
    bad_codes: Matcher | None = None  # error_ratio: a status matching this is an error
    le_ms: float = 0.0  # latency and propagation: the boundary of "good"
    title: str = ""
    sli: tuple[str, str] = ("", "")  # latency: the catalog's good and total selectors

    def covers(self, method: str, route: str) -> bool:
        labels = {"method": method, "route": route}
        return all(m.matches(labels[m.label]) for m in self.scope if m.label in labels)

    def describe(self) -> str:
        where = " ".join(str(m) for m in self.scope) or "all requests"
        if self.kind == "error_ratio":
            return f"error ratio of {where} <= {self.limit:.3%}"
        what = "revocation propagation delays" if self.kind == "propagation" else where
        return f"{self.limit:.0%} of {what} within {self.le_ms:g} ms"


def _le(matchers: Sequence[Matcher]) -> float:
    # le="0.005", or a regex such as "5|5[.]0" that spells one number two ways.
    (le,) = [m.value for m in matchers if m.label == "le"]
    return float(re.split(r"\|", le)[0].replace("[.]", "."))


def threshold_for(slo: SLO) -> Threshold | None:
    """The load-test threshold of one SLO, or None when a load test cannot observe it."""
    _, scope = parse_selector(slo.sli.total)
    if slo.sli.errors:
        _, bad = parse_selector(slo.sli.errors)
        codes = next((m for m in bad if m.label == "code"), None)
        keep = tuple(m for m in scope if m.label in ("route", "method"))
        return Threshold(slo.id, "error_ratio", slo.error_budget, keep, codes, title=slo.title)
    good_metric, good = parse_selector(slo.sli.good)
    base = good_metric.removesuffix("_bucket")
    le_ms = _le(good) * 1000
    if base == _PROPAGATION:
        return Threshold(slo.id, "propagation", slo.ratio, le_ms=le_ms, title=slo.title)
    if base not in _LATENCY_SCOPES:
        return None
    fixed = tuple(Matcher(k, "=", v) for k, v in _LATENCY_SCOPES[base].items())
    keep = fixed + tuple(m for m in scope if m.label in ("route", "method"))
    return Threshold(slo.id, "latency", slo.ratio, keep, le_ms=le_ms, title=slo.title,
                     sli=(slo.sli.good, slo.sli.total))


def derive(catalog: Sequence[SLO] = CATALOG) -> tuple[Threshold, ...]:
    return tuple(t for t in map(threshold_for, catalog) if t is not None)


@dataclass(frozen=True)
class Verdict:
    threshold: Threshold
    events: int
    observed: float | None  # the error ratio, or the good share
    passed: bool | None  # None: no events to judge
    detail: str
    basis: str = "client"  # client: measured by the load test; server: the mesh's own SLI

    def line(self) -> str:
        word = {True: "PASS", False: "FAIL", None: "NO DATA"}[self.passed]
        return f"{word} {self.threshold.id}: {self.detail}"

    def as_json(self) -> dict[str, object]:
        t = self.threshold
        return {"id": t.id, "title": t.title, "kind": t.kind, "limit": t.limit,
                "le_ms": t.le_ms or None, "description": t.describe(), "events": self.events,
                "observed": self.observed, "passed": self.passed, "detail": self.detail,
                "basis": self.basis}


def client_overhead(routes: Mapping[str, Cell]) -> str:
    cell = routes.get(OVERHEAD_ROUTE)
    if cell is None or not cell.requests:
        return ""
    return (f"the client's own overhead ({OVERHEAD_ROUTE}, no work in the server) p50"
            f" {cell.service.quantile(0.5):.2f} ms, p99 {cell.service.quantile(0.99):.2f} ms")


def _judge(t: Threshold, routes: Mapping[str, Cell], server: ServerSLI | None,
           fallback: str) -> Verdict:
    cells = [c for key, c in routes.items() if t.covers(*key.split(" ", 1))]
    events = sum(c.requests for c in cells)
    if t.kind == "error_ratio":
        if not events:
            return Verdict(t, 0, None, None, f"no requests matched ({t.describe()})")
        bad = sum(n for c in cells for code, n in c.statuses.items()
                  if code == 0 or (t.bad_codes is not None and t.bad_codes.matches(str(code))))
        ratio = bad / events
        return Verdict(t, events, ratio, ratio <= t.limit,
                       f"{bad} of {events} requests failed ({ratio:.3%}, budget {t.limit:.3%})")
    merged, corrected = Histogram(), Histogram()
    for c in cells:
        merged.merge(c.service)
        corrected.merge(c.corrected)
    q = f"p{t.limit * 100:g}"
    client = (f"{q} {merged.quantile(t.limit):.2f} ms service time,"
              f" {corrected.quantile(t.limit):.2f} ms from the intended send time")
    if overhead := client_overhead(routes):
        client += f"; {overhead}"
    good, total = server(*t.sli) if server is not None else (0.0, 0.0)
    if total > 0:
        # The SLI as the catalog defines it (inside the server), over this run's window.
        share = good / total
        return Verdict(t, int(total), share, share >= t.limit,
                       f"{share:.2%} of {total:.0f} within {t.le_ms:g} ms by the mesh's own"
                       f" histogram (objective {t.limit:.0%}); client side {client}", "server")
    if not events:
        return Verdict(t, 0, None, None, f"no requests matched ({t.describe()})")
    share = merged.share_at_most(t.le_ms)
    why = f" because {fallback}" if fallback else ""
    return Verdict(t, events, share, share >= t.limit,
                   f"{share:.2%} of {events} within {t.le_ms:g} ms by client timings{why},"
                   f" HTTP and the generator included (objective {t.limit:.0%}); {client}")


def _judge_propagation(t: Threshold, delays: Sequence[float | None]) -> Verdict:
    if not delays:
        return Verdict(t, 0, None, None, "no revocation probes ran", "probe")
    good = sum(1 for d in delays if d is not None and d * 1000 <= t.le_ms)
    share = good / len(delays)
    worst = "timed out" if None in delays else f"{max(d for d in delays if d is not None):.3f} s"
    return Verdict(t, len(delays), share, share >= t.limit,
                   f"{good} of {len(delays)} replica checks saw the revocation within"
                   f" {t.le_ms / 1000:g} s (objective {t.limit:.0%}; worst {worst})", "probe")


def evaluate(thresholds: Sequence[Threshold], routes: Mapping[str, Cell],
             delays: Sequence[float | None] = (), server: ServerSLI | None = None,
             fallback: str = "") -> list[Verdict]:
    """Judge every threshold. Latency uses the mesh's own SLI when ``server`` can give it
    (every replica scraped at both ends of the run), else the client's service times, which
    include HTTP, the network and the generator and so are stricter than the SLO; then
    ``fallback`` says why, and the detail gives the client's measured overhead."""
    return [_judge_propagation(t, delays) if t.kind == "propagation"
            else _judge(t, routes, server, fallback) for t in thresholds]
