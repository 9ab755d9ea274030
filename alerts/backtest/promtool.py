"""Run rule files over input series in promtool, the Prometheus rule evaluator, and read back
when each alert fired.

Why promtool unit tests rather than Prometheus over backfilled TSDB blocks: Prometheus
evaluates rules only at wall-clock time (``promtool tsdb create-blocks-from rules`` backfills
recording rules and skips alerts), so a backfill would need days of waiting or a PromQL
re-implementation of ``for`` and alert state. ``promtool test rules`` runs the rule manager
Prometheus runs (groups, ``for``, the ``ALERTS`` series, staleness) on a simulated clock:
three days evaluate in seconds, identically on every run once ``group_eval_order`` fixes the
order of groups (Prometheus itself runs each group on its own timer).

promtool only reports failures, so each test group ends with one query that cannot match its
expectation: the failure message lists, per alert and severity, the first and last firing
evaluation, how many evaluations fired and how many times it started firing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alerts.backtest.outcome import Firing
from alerts.backtest.series import BacktestError

__all__ = ["Case", "Measured", "eval_order", "run_cases"]

Measured = dict[str, dict[tuple[str, str], Firing]]  # case -> (alert, severity) -> firing

TIMEOUT_S = 900
_FIRING = 'max by (alertname, severity) (ALERTS{{alertstate="firing"}}{offset})'
_SAMPLE = re.compile(r'\{([^{}]*)\} (\S+?)(?:,|$)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Case:
    """One promtool test group: a scenario's series over one set of rule files."""

    name: str  # unique in a run
    rule_files: tuple[Path, ...]
    step: int  # minutes between samples and between evaluations
    horizon: int  # minutes
    series: tuple[tuple[str, str], ...]


def eval_order(rule_files: Sequence[Path]) -> list[str]:
    """Every group, recording-only groups first: an alert then sees the records of the same
    evaluation, the best case of Prometheus' independent group timers."""
    groups = [g for f in rule_files for g in yaml.safe_load(f.read_text())["groups"]]
    records = [g["name"] for g in groups if all("record" in r for r in g["rules"])]
    return records + [g["name"] for g in groups if g["name"] not in records]


def _query(case: Case) -> str:
    window = f"[{case.horizon + case.step}m:{case.step}m]"
    now, before = _FIRING.format(offset=""), _FIRING.format(offset=f" offset {case.step}m")
    parts = {
        "first": f"min_over_time(timestamp({now}){window})",
        "last": f"max_over_time(timestamp({now}){window})",
        "steps": f"count_over_time({now}{window})",
        "episodes": f"count_over_time(({now} unless {before}){window})",
        "end": "vector(1)",
    }
    inner = "\nor ".join(f'label_replace({e}, "measure", "{m}", "", "")' for m, e in parts.items())
    return f'label_replace(\n{inner},\n"case", "{case.name}", "", "")'


def _document(cases: Sequence[Case]) -> dict[str, Any]:
    first = cases[0]
    return {
        "rule_files": [str(p.resolve()) for p in first.rule_files],
        "evaluation_interval": f"{first.step}m",
        "group_eval_order": eval_order(first.rule_files),
        "tests": [{
            "interval": f"{c.step}m",
            "input_series": [{"series": s, "values": v} for s, v in c.series],
            "promql_expr_test": [{
                "expr": _query(c), "eval_time": f"{c.horizon}m",
                "exp_samples": [{"labels": '{measure="never"}', "value": -1}],
            }],
        } for c in cases],
    }


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise BacktestError("promtool not found: apt-get install -y prometheus")
    return path


def _run_file(path: Path) -> str:
    try:
        done = subprocess.run([_promtool(), "test", "rules", str(path)], capture_output=True,
                              text=True, timeout=TIMEOUT_S, cwd=path.parent)
    except subprocess.TimeoutExpired as exc:
        raise BacktestError(f"promtool took over {TIMEOUT_S} s on {path.name}") from exc
    out = done.stdout + done.stderr
    if " err: " in out or "WARNING" in out or "FAILED" not in out:
        raise BacktestError(f"promtool could not evaluate the rules: {out.strip()[:2000]}")
    return out


def _parse(out: str, steps: dict[str, int]) -> Measured:
    found: dict[str, dict[tuple[str, str], dict[str, float]]] = {}
    for line in out.splitlines():
        if not line.strip().startswith("got:"):
            continue
        for labels_text, value in _SAMPLE.findall(line):
            labels = dict(_LABEL.findall(labels_text))
            per_alert = found.setdefault(labels["case"], {})
            if labels["measure"] != "end":
                key = (labels["alertname"], labels["severity"])
                per_alert.setdefault(key, {})[labels["measure"]] = float(value)
    return {case: {k: Firing(int(m["first"]) // 60, int(m["last"]) // 60, int(m["steps"]),
                             int(m["episodes"]), steps[case]) for k, m in alerts.items()}
            for case, alerts in found.items()}


def _chunks(cases: Sequence[Case], jobs: int) -> list[list[Case]]:
    """Cases of the same rule files and step share a file; big sets are split across jobs."""
    by_kind: dict[tuple[tuple[Path, ...], int], list[Case]] = {}
    for c in cases:
        by_kind.setdefault((c.rule_files, c.step), []).append(c)
    out = []
    for group in by_kind.values():
        parts = max(1, min(jobs, len(group)))
        out += [group[i::parts] for i in range(parts)]
    return sorted(out, key=lambda g: -sum(c.horizon // c.step for c in g))


def run_cases(cases: Sequence[Case], jobs: int = 2) -> Measured:
    """Case name -> (alert, severity) -> when it fired; alerts that never fired are absent."""
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise BacktestError("case names must be unique")
    with tempfile.TemporaryDirectory(prefix="meshsre-backtest-") as tmp:
        files = []
        for i, chunk in enumerate(_chunks(cases, jobs)):
            path = Path(tmp) / f"cases-{i}.test.yml"
            path.write_text(yaml.safe_dump(_document(chunk), sort_keys=False, width=1 << 20))
            files.append(path)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            outputs = list(pool.map(_run_file, files))
    results: Measured = {}
    steps = {c.name: c.step for c in cases}
    for out in outputs:
        results.update(_parse(out, steps))
    missing = sorted(set(names) - set(results))
    if missing:
        raise BacktestError(f"promtool gave no result for {', '.join(missing[:5])}")
    return results
