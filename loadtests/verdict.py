"""The end of a run: judge thresholds and validity, write load.json, choose the exit code.

A breached threshold fails the run (exit 1). An *invalid* run (no requests at all, or fewer
workers than expected at some point) exits 3: its figures do not describe the system. A
generator that saturated its CPU, or could not send its offered load, is flagged as a warning:
the system may be better than its figures, never worse.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import locust

from loadtests import record
from loadtests.harness import Harness, options
from loadtests.sli import START_TIME, Snapshot, increase, scrape
from loadtests.thresholds import ServerSLI, Verdict, derive, evaluate

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["EXIT_BREACHED", "EXIT_INVALID", "EXIT_PASSED", "finish_run"]

log = logging.getLogger("meshsre.loadtest")
EXIT_PASSED, EXIT_BREACHED, EXIT_INVALID = 0, 1, 3
DROPPED_WARNING = 0.01


def _generator(h: Harness, requests: int) -> dict[str, Any]:
    runner = h.runner
    processes = {
        label: {
            "cpu_seconds": round(h.cpu_seconds.get(label, 0.0), 3),
            "cpu_percent_max": max(samples, default=0.0),
            "cpu_percent_mean": round(sum(samples) / len(samples), 1) if samples else 0.0,
            "saturated": record.cpu_saturated(samples),
        }
        for label, samples in sorted(h.cpu_samples.items())
    }
    cpu_seconds = sum(h.cpu_seconds.values())
    locust_warning = bool(runner.cpu_warning_emitted
                          or getattr(runner, "worker_cpu_warning_emitted", False))
    seen = [n for _, n in h.workers_seen]
    return {
        "processes": processes, "cpu_seconds": round(cpu_seconds, 3),
        "requests_per_cpu_second": round(requests / cpu_seconds, 1) if cpu_seconds else None,
        "saturated": locust_warning or any(p["saturated"] for p in processes.values()),
        "locust_cpu_warning": locust_warning,
        "workers": {"expected": int(getattr(h.env.parsed_options, "expect_workers", 0) or 0)
                    if seen else 0,
                    "min_seen": min(seen, default=0), "max_seen": max(seen, default=0)},
    }


def _validity(h: Harness, totals: dict[str, Any], generator: dict[str, Any],
              verdicts: list[Verdict]) -> tuple[list[str], list[str]]:
    invalid, warnings = [], []
    if not totals["requests"]:
        invalid.append("no requests were recorded")
    workers = generator["workers"]
    if workers["expected"] and workers["min_seen"] < workers["expected"]:
        at = next(t for t, n in h.workers_seen if n < workers["expected"])
        invalid.append(f"worker count dropped to {workers['min_seen']} of"
                       f" {workers['expected']} expected ({at:.0f} s into the run)")
    if generator["saturated"]:
        warnings.append("the load generator saturated its CPU: latencies and rates understate"
                        " the system (use more workers)")
    if totals["dropped_ratio"] > DROPPED_WARNING:
        warnings.append(f"{totals['dropped']} of {totals['offered']} intended requests were"
                        f" dropped ({totals['dropped_ratio']:.1%}): the offered load was not"
                        " delivered (more users, or the system is too slow)")
    if h.probe_errors:
        warnings.append(f"{len(h.probe_errors)} revocation probes failed: {h.probe_errors[-1]}")
    warnings += [f"threshold {v.threshold.id}: {v.detail}" for v in verdicts if v.passed is None]
    return invalid, warnings


def _revocation(h: Harness) -> dict[str, Any]:
    delays = sorted(p.seconds for p in h.propagations if p.seconds is not None)

    def q(f: float) -> float | None:
        return round(delays[min(len(delays) - 1, int(f * len(delays)))], 4) if delays else None

    return {"replicas": h.replicas() if h.admin_token else [],
            "checks": [p.as_json() for p in h.propagations], "errors": h.probe_errors,
            "summary": {"count": len(h.propagations), "p50_s": q(0.5), "p99_s": q(0.99),
                        "max_s": delays[-1] if delays else None,
                        "timed_out": sum(p.seconds is None for p in h.propagations)}}


def _files(opts: Any, run_dir: Path) -> dict[str, str]:
    candidates = {
        "stats_csv": f"{opts.csv_prefix}_stats.csv" if opts.csv_prefix else None,
        "history_csv": f"{opts.csv_prefix}_stats_history.csv" if opts.csv_prefix else None,
        "html": opts.html_file or None,
        "json": f"{opts.json_file}.json" if opts.json_file else None,
    }
    out = {}
    for name, path in candidates.items():
        if path:
            p = Path(path)
            out[name] = str(p.relative_to(run_dir)) if p.is_relative_to(run_dir) else str(p)
    return out


def _server_sli(before: dict[str, Snapshot], after: dict[str, Snapshot]) -> ServerSLI:
    def sli(good: str, total: str) -> tuple[float, float]:
        g, t = increase(before, after, [good, total])
        return g, t
    return sli


def _same_process(before: dict[str, Snapshot], after: dict[str, Snapshot]) -> bool:
    return all(after[url].total(START_TIME) == snap.total(START_TIME)
               for url, snap in before.items() if url in after)


def finish_run(h: Harness, environment: Environment) -> int:
    opts = options(environment)
    run_id = opts.run_id or record.default_run_id()
    run_dir = Path(opts.run_dir) if opts.run_dir else record.OUT_DIR / run_id
    after = scrape(h.sli_targets) if h.metrics_before else None
    fallback = h.sli_fallback
    if h.metrics_before and after is None:
        fallback = "the server's /metrics could not be read at the end of the run"
    elif h.metrics_before and after and not h.sli_replicas() \
            and not _same_process(h.metrics_before, after):
        # A named replica that restarts reads as a counter reset; the host alone may now be
        # answered by another process behind the same address.
        fallback, after = "the process behind the host restarted during the run", None
    server = _server_sli(h.metrics_before, after) if h.metrics_before and after else None
    verdicts = evaluate(derive(), h.recorder.routes, [p.seconds for p in h.propagations],
                        server, fallback)
    parameters = {
        "host": environment.host, "shape": opts.shape, "users": opts.num_users,
        "rate": opts.rate, "duration_s": opts.run_time or None,
        "workers": opts.expect_workers if h.workers_seen else 0,
        "user_classes": sorted(c.__name__ for c in environment.user_classes),
        "max_lag_s": opts.max_lag, "late_after_s": opts.late_after,
        "agents_per_user": opts.agents_per_user, "revocation_every_s": opts.revocation_every,
        "admin_token": h.admin_token is not None, "locust_version": locust.__version__,
        "sli_replicas": h.sli_targets if server else [],
        "sli_basis": "server" if server else "client", "sli_fallback": fallback,
    }
    rec = record.build(
        run_id=run_id, parameters=parameters, started=h.started, ended=h.ended or time.time(),
        recorder=h.recorder, per_second=h.per_second, thresholds=[v.as_json() for v in verdicts],
        verdict={}, generator={}, ledger=h.ledger.as_json(), revocation=_revocation(h),
        files=_files(opts, run_dir),
    )
    rec["generator"] = _generator(h, rec["totals"]["requests"])
    invalid, warnings = _validity(h, rec["totals"], rec["generator"], verdicts)
    breached = [v.threshold.id for v in verdicts if v.passed is False]
    code = EXIT_INVALID if invalid else EXIT_BREACHED if breached else EXIT_PASSED
    rec["verdict"] = {"passed": not breached and not invalid, "breached": breached,
                      "valid": not invalid, "invalid_reasons": invalid, "warnings": warnings,
                      "exit_code": code}
    path = record.write(run_dir, rec)
    for v in verdicts:
        (log.error if v.passed is False else log.info)("threshold %s", v.line())
    for reason in invalid:
        log.error("run invalid: %s", reason)
    for warning in warnings:
        log.warning("warning: %s", warning)
    if breached:
        log.error("thresholds breached: %s", ", ".join(breached))
    log.info("run record: %s", path)
    return code
