"""Counter series for one SLO, in promtool's notation, from a scenario's timeline.

Each zone has one replica and two counters: for an errors/total SLI one series the errors
selector matches and one it does not (their sum is the total); for a good/total SLI the total
(``_count``) and the good bucket. Label values are found from the SLI's own selectors and the
values the mesh can expose (``mesh.telemetry``), so a new SLO needs no backtest code.

What a scrape would see, not just the counts: a replica that restarts exposes a series again
only from its first event (prometheus_client creates labelled children on use), a series a
scrape misses gets a staleness marker, and nothing while it stays missing.
"""

from __future__ import annotations

import re
from itertools import accumulate

import promql_parser

from alerts.backtest.scenarios import Scenario
from alerts.backtest.timeline import Timeline
from alerts.catalog import SLO
from mesh import telemetry

__all__ = ["BacktestError", "encode", "labels_for", "slo_series"]

Value = int | str | None  # a counter value, "stale", or None (no sample)
_METHODS = ("POST", "GET", "PUT", "DELETE")
_CODES = ("200", "201", "403", "404", "429", "500", "503")


class BacktestError(RuntimeError):
    """The backtest cannot run: the message says what to change."""


def _vocabulary(metric: str, label: str) -> tuple[str, ...]:
    known = {"route": telemetry.ROUTES, "method": _METHODS, "code": _CODES,
             "policy": telemetry.POLICIES, "channel": telemetry.PROPAGATION_CHANNELS,
             "result": telemetry.HANDSHAKE_RESULTS + telemetry.VERIFICATION_RESULTS}
    if label == "le":
        spec = next((m for m in telemetry.CONTRACT if metric == f"{m.name}_bucket"), None)
        buckets = (*spec.buckets, float("inf")) if spec else ()
        # As prometheus_client writes them: 0.005, 5.0, +Inf.
        return tuple("+Inf" if b == float("inf") else repr(float(b)) for b in buckets)
    return known.get(label, ("x",))


def _matches(op: promql_parser.MatchOp, pattern: str, value: str) -> bool:
    if op == promql_parser.MatchOp.Equal:
        return value == pattern
    if op == promql_parser.MatchOp.NotEqual:
        return value != pattern
    hit = re.fullmatch(pattern, value) is not None
    return hit if op == promql_parser.MatchOp.Re else not hit


def _selector(text: str) -> promql_parser.VectorSelector:
    node = promql_parser.parse(text)
    assert isinstance(node, promql_parser.VectorSelector), text
    return node


def labels_for(must: list[str], must_not: str = "") -> tuple[str, dict[str, str]]:
    """A metric name and labels that every selector of ``must`` matches and ``must_not``
    does not; BacktestError when no known label value fits."""
    selectors = [_selector(s) for s in must]
    name = selectors[-1].name or ""
    matchers = [m for s in selectors for m in s.matchers.matchers]
    avoid = _selector(must_not).matchers.matchers if must_not else []
    fits: dict[str, list[str]] = {}
    for label in sorted({m.name for m in matchers} | {m.name for m in avoid}):
        mine = [m for m in matchers if m.name == label]
        pool = [m.value for m in mine if m.op == promql_parser.MatchOp.Equal]
        pool += _vocabulary(name, label)
        fits[label] = [v for v in pool if all(_matches(m.op, m.value, v) for m in mine)]
        if not fits[label]:
            raise BacktestError(f"no known value of label {label!r} fits {' and '.join(must)}")
    labels = {label: values[0] for label, values in fits.items()}
    if avoid:
        # One label is enough to keep the series out of ``must_not``.
        breaking = [(m.name, v) for m in avoid for v in fits[m.name]
                    if not _matches(m.op, m.value, v)]
        if not breaking:
            raise BacktestError(f"no series matches {must[-1]} without matching {must_not}")
        labels[breaking[0][0]] = breaking[0][1]
    return name, labels


def _render(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def _run(ints: list[int | None], i: int) -> int:
    """How many values from ``i`` on keep the same step (at least 1)."""
    first = ints[i]
    if first is None or i + 1 >= len(ints) or ints[i + 1] is None:
        return 1
    step, j = ints[i + 1] - first, i + 1  # type: ignore[operator]
    while j < len(ints) and (now := ints[j]) is not None and (before := ints[j - 1]) is not None \
            and now - before == step:
        j += 1
    return j - i


def encode(values: list[Value]) -> str:
    """promtool's notation: ``0+5x3`` is 0 5 10 15, ``_x2`` two missing samples."""
    ints = [v if isinstance(v, int) else None for v in values]
    out: list[str] = []
    i = 0
    while i < len(values):
        v = values[i]
        if isinstance(v, int):
            n = _run(ints, i)
            if n >= 3:
                out.append(f"{v}{values[i + 1] - v:+d}x{n - 1}")  # type: ignore[operator]
            else:
                out.append(str(v))
                n = 1
        else:
            n = 1
            while i + n < len(values) and values[i + n] == v:
                n += 1
            token = "_" if v is None else v
            out.append(token if n == 1 else f"{token}x{n}")
        i += n
    return " ".join(out)


def _exposed(counts: list[int], line: Timeline, scenario: Scenario, zone: str,
             vanishes: bool) -> list[Value]:
    """Counter values as scrapes see them, restarts, absences and a vanished series applied."""
    step = line.resolution.step
    at = [k * step for k in range(len(counts))]
    restart = scenario.restart == zone
    values: list[int] = list(accumulate(counts))
    if restart:
        before = values[line.fault_start // step]
        values = [v if t <= line.fault_start else v - before for v, t in zip(values, at,
                                                                                strict=True)]
    gone_from, gone_to = -1, -1
    if scenario.absent is not None and scenario.absent[0] == zone:
        gone_from, gone_to = line.fault_start, line.fault_start + scenario.absent[1]
    if vanishes:
        gone_from, gone_to = line.fault_start, line.fault_end
    out: list[Value] = []
    for v, t in zip(values, at, strict=True):
        hidden = gone_from < t <= gone_to or (restart and t > line.fault_start and v == 0)
        out.append(("stale" if out and out[-1] not in (None, "stale") else None) if hidden
                   else v)
    return out


def slo_series(slo: SLO, line: Timeline, scenario: Scenario) -> list[tuple[str, str]]:
    """(series, values) of every input series of one scenario for one SLO."""
    sli = slo.sli
    out = []
    for z, zone in enumerate(line.zones):
        target = {"job": "mesh", "instance": f"{zone}0", "zone": zone, "replica": f"{zone}0"}
        events, errors = line.events[z], line.errors[z]
        good = [n - e for n, e in zip(events, errors, strict=True)]
        if min(good) < 0:
            raise BacktestError(f"{scenario.name}: more errors than events in zone {zone}")
        if sli.errors:
            pairs = [(labels_for([sli.total], sli.errors), good, False),
                     (labels_for([sli.total, sli.errors]), list(errors), False)]
        else:
            pairs = [(labels_for([sli.total]), list(events), False),
                     (labels_for([sli.good]), good, scenario.good_missing)]
        for (name, labels), counts, vanishes in pairs:
            series = _render(name, {**target, **labels})
            out.append((series, encode(_exposed(counts, line, scenario, zone, vanishes))))
    return out
