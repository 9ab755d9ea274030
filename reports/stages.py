"""The stages of the nightly job, in order, each one command (see ``reports.nightly``).

The chaos stages pass the job's durations and rates to an experiment as ``--var`` settings,
only those the experiment declares in its configuration, so one experiment's knob never
reaches another.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.runner import zone_drill
from meshsre import checks as checks_record
from meshsre import status
from reports.job import EXIT_ERROR, MESHSRE, Nightly, Stage, StageError
from reports.prom import Prom

__all__ = ["CHAOS_STAGES", "DRILL_STAGES", "NEEDS_PATRONI", "NEEDS_SIDECARS", "ZONE_EXPERIMENT",
           "chaos", "down", "governance", "report", "security", "steady", "up"]

ZONE_EXPERIMENT = "az-failure"  # a stage per fault mode: az-failure, az-failure-blackhole, ...
DRILL_STAGES = ("backup-restore", "revocation", "event-stream", "data-failover")
CHAOS_STAGES = (ZONE_EXPERIMENT, *DRILL_STAGES)
NEEDS_SIDECARS = frozenset({"event-stream"})
NEEDS_PATRONI = frozenset({"data-failover"})  # the `data` fault: NIGHTLY_STORAGE=patroni
EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "chaos"
SECURITY_SUITE = Path(__file__).resolve().parent.parent / "suites" / "test_security.py"
# The signed audit checkpoint the security suite keeps (meshsre audit checkpoint): the latest
# in the output directory, from run to run, and each run's copy in its run directory.
AUDIT_CHECKPOINT = "audit-checkpoint.json"


def up(job: Nightly, stage: Stage) -> str:
    s = job.settings
    state = ["--state-dir", s.state_dir]
    job.command(stage, [MESHSRE, "down", "--purge", *state], 60)  # a clean slate every night
    code = job.command(stage, [MESHSRE, "up", *state, "--zones", s.zones, "--replicas-per-zone",
                               str(s.replicas), "--storage", s.storage, "--base-port", "0",
                               "--sidecars-per-zone", str(s.sidecars_per_zone)], 180)
    if code != 0:
        raise StageError(f"meshsre up exited {code}")
    try:
        job.cluster = status.local_cluster(s.state_dir)
    except status.StatusUnavailable as exc:
        raise StageError(str(exc)) from exc
    (job.run_dir / "logs" / "status.json").write_text(json.dumps(job.cluster, indent=2))
    if not job.cluster.get("ready"):
        raise StageError("the cluster is up but not ready: see logs/status.json")
    job.progress.prom = Prom(job.cluster["prometheus"])
    mesh = [c for c in job.cluster["components"] if c["kind"] == "mesh"]
    return (f"{len(mesh)} replicas in zones {', '.join(job.cluster['zones'])},"
            f" front door {job.cluster['front_door']}")


def steady(job: Nightly, stage: Stage) -> str:
    s = job.settings
    # Every replica by its own URL: the load test reads their /metrics for the server-side
    # SLIs and runs its revocation probe across them. A remote mesh is reached by its URL only.
    replicas = [c["url"] for c in job.cluster.get("components", []) if c["kind"] == "mesh"]
    where = ["--host", job.env()["MESH_URL"]] + (["--replicas", ",".join(replicas)]
                                                 if replicas else [])
    argv = [MESHSRE, "loadtest", *where, "--users", str(s.users), "--rate", f"{s.rate:g}",
            "--duration", f"{s.steady_seconds}s", "--shape", "steady", "--run-id", "steady",
            "--out", str(job.run_dir), "--quiet"]
    stage.exit_code = job.command(stage, argv, s.steady_seconds + s.stage_timeout)
    path = job.run_dir / "steady" / "load.json"
    if not path.exists():
        raise StageError(f"meshsre loadtest exited {stage.exit_code} without {path}")
    rec = json.loads(path.read_text())
    totals, verdict = rec["totals"], rec["verdict"]
    word = "passed" if verdict["passed"] else "breached " + ", ".join(verdict["breached"]) \
        if verdict["valid"] else "INVALID: " + "; ".join(verdict["invalid_reasons"])
    return (f"{word}: {totals['requests']} requests at {totals['rps']:.1f}/s,"
            f" 5xx {totals['error_ratio']:.2%}, p99 {totals['service_ms']['p99']:.1f} ms"
            f" ({totals['corrected_ms']['p99']:.1f} ms from the intended send time)")


def governance(job: Nightly, stage: Stage) -> str:
    """Tool calls through the cluster's sidecars and directly, revocations in the second half:
    the governance overhead and revocation to enforcement on every sidecar."""
    s = job.settings
    argv = [MESHSRE, "governance", "--run-id", s.run_id, "--out", str(job.out_dir),
            "--state-dir", s.state_dir, "--duration", f"{s.governance_seconds}s",
            "--rate", f"{s.governance_rate:g}", "--users", str(s.users)]
    if not job.cluster.get("sidecars"):
        raise StageError("the cluster runs no sidecars (NIGHTLY_SIDECARS_PER_ZONE)")
    stage.exit_code = job.command(stage, argv, s.governance_seconds + s.stage_timeout)
    path = job.run_dir / "governance" / "governance.json"
    if not path.exists():
        raise StageError(f"meshsre governance exited {stage.exit_code} without {path}")
    rec = json.loads(path.read_text())
    o, r = rec["overhead"], rec["revocation"]
    word = "passed" if rec["passed"] else "MISSED"
    return (f"{word}: overhead p99 {o['p99_overhead_ms']} ms (ratio {o['p99_ratio']}),"
            f" revocation to enforcement p99 {r['p99_s']} s over {len(rec['sidecars'])}"
            " sidecars")


def _variables(job: Nightly, name: str) -> list[str]:
    path = EXPERIMENTS_DIR / f"{name}.json"
    if not path.exists():
        raise StageError(f"no experiment {path}")
    known = set(json.loads(path.read_text()).get("configuration", {}))
    s = job.settings
    wanted: dict[str, Any] = {
        "load_rate": s.rate if name == "az-failure" else s.drill_load_rate,
        "load_users": s.users, "load_warmup": s.warmup_seconds,
        "observe_seconds": s.observe_seconds, "detect_timeout": s.detect_timeout,
        **({"rounds": s.revocation_rounds} if name == "revocation" else {}),
        **s.variables}
    return [f"--var={k}={v}" for k, v in sorted(wanted.items()) if k in known]


def _data_tier(m: dict[str, Any]) -> str:
    """The zone's database member across the fault (chaos.datazone), on the Patroni tier."""
    if "data_role" not in m:
        return ""
    failover = (f", failover {m.get('failover_seconds')} s to {m.get('new_primary')}"
                if m.get("failed_primary") else "")
    return (f"; data tier: {m.get('data_member')} ({m.get('data_role')}), SQL writes paused"
            f" {m.get('sql_writes_paused_seconds')} s{failover}, {m.get('sql_writes_lost')}"
            f" lost, RPO {m.get('rpo_seconds')} s")


def _figures(name: str, rec: dict[str, Any]) -> str:
    m = rec.get("measurements") or {}
    if name.startswith("az-failure"):
        kinds = m.get("errors_by_kind") or {}
        errors = ", ".join(f"{n} {k}" for k, n in kinds.items() if n) or "none"
        return (f"{m.get('mode')}: TTD {m.get('ttd_seconds')} s ({m.get('ttd_alert')}), TTR"
                f" {m.get('ttr_seconds')} s by errors, {m.get('ttr_latency_seconds')} s by"
                f" latency (expected at most {m.get('expected_ttr_seconds')} s), worst p99"
                f" {m.get('p99_corrected_worst_second_ms')} ms, errors {errors} of"
                f" {m.get('requests_during_failure')}, {m.get('writes_lost')} acknowledged"
                " writes lost" + _data_tier(m))
    if name == "backup-restore":
        return (f"RTO {m.get('rto_seconds')} s, RPO {m.get('rpo_seconds')} s,"
                f" {m.get('writes_lost')} acknowledged writes lost, audit chain"
                f" {'valid' if m.get('chain_ok') else 'NOT valid'}")
    if name == "data-failover":
        return (f"failover {m.get('failover_seconds')} s ({m.get('failed_primary')} ->"
                f" {m.get('new_primary')}, {m.get('replication')}),"
                f" {m.get('writes_lost')} acknowledged writes lost, RPO {m.get('rpo_seconds')} s,"
                f" lag {m.get('lag_bytes_before')} B before / {m.get('lag_bytes_during')} B"
                f" during, TTD {m.get('ttd_seconds')} s ({m.get('ttd_alert')})")
    sidecars = m.get("sidecars") or {}
    phases = sidecars.get("phases") or {}
    ran = dict.fromkeys(r["phase"] for r in sidecars.get("per_sidecar") or [])  # in order
    at_sidecars = "; ".join(f"{k}: p99 {phases[k].get('p99_s')} s" for k in ran if k in phases)
    if name == "event-stream":
        return f"revocation to enforcement at sidecars: {at_sidecars or 'not measured'}"
    return (f"p50 {m.get('p50_seconds')} s, p99 {m.get('p99_seconds')} s,"
            f" {m.get('unpropagated')} never enforced"
            + (f"; at sidecars {at_sidecars}" if at_sidecars else ""))


def _chaos(job: Nightly, stage: Stage, name: str, mode: str | None) -> str:
    s = job.settings
    argv = [MESHSRE, "chaos", name, "--run-id", s.run_id, "--out", str(job.out_dir),
            "--state-dir", s.state_dir, "--timeout", str(s.stage_timeout),
            *(["--mode", mode] if mode else []), *_variables(job, name)]
    stage.exit_code = job.command(stage, argv, s.stage_timeout + 240)  # rollbacks get time too
    path = job.run_dir / f"chaos-{zone_drill(mode) if mode else name}.json"
    if not path.exists():
        raise StageError(f"meshsre chaos exited {stage.exit_code} without {path.name}")
    rec = json.loads(path.read_text())
    failures = rec.get("failures") or []
    word = "passed" if rec.get("passed") else f"FAILED ({'; '.join(failures)})"
    return f"{word}: {_figures(rec['drill'], rec)}"


def chaos(job: Nightly, name: str, mode: str | None = None) -> Callable[[Stage], str]:
    """The stage running experiment ``name``, in fault ``mode`` for the AZ failure."""
    return lambda stage: _chaos(job, stage, name, mode)


def security(job: Nightly, stage: Stage) -> str:
    """The security suite against the mesh (``make validate`` runs it too), as a checks
    record the report shows: every attack of issue 17, each to be refused."""
    junit = job.run_dir / "security" / "junit.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    # The audit checkpoint outlives the run, so that the next one proves its log extends it.
    kept = job.out_dir / AUDIT_CHECKPOINT
    stage.exit_code = job.command(stage, [
        sys.executable, "-m", "pytest", str(SECURITY_SUITE), "-q", "-p", "no:cacheprovider",
        f"--junitxml={junit}", "-o", "junit_family=xunit2", f"--audit-checkpoint={kept}"],
        job.settings.stage_timeout)
    if not junit.exists():
        raise StageError(f"the security suite exited {stage.exit_code} without {junit}")
    if kept.exists() and kept.stat().st_mtime >= started:
        shutil.copyfile(kept, job.run_dir / AUDIT_CHECKPOINT)
        doc = json.loads(kept.read_text())
        job.audit_checkpoint = {"file": AUDIT_CHECKPOINT, "size": doc["size"],
                                "timestamp": doc["timestamp"],
                                "origin": doc["note"].split("\n", 1)[0]}
    rec = checks_record.from_junit("security", "Security suite (hostile clients)", junit,
                                   job.env().get("MESH_URL", ""), started, time.time())
    checks_record.write(job.run_dir, rec)
    counts = {o: sum(c["outcome"] == o for c in rec["checks"])
              for o in ("passed", "failed", "error", "skipped")}
    figures = rec["figures"]
    sli = figures.get("slow_bodies.server_decisions_within_slo", "?")
    return (f"{'passed' if rec['passed'] else 'FAILED'}: {counts['passed']} of"
            f" {len(rec['checks'])} checks passed ({counts['skipped']} skipped); replay refused"
            f" by {figures.get('replay.refused_by', '?')}; with 300 slow bodies, decisions"
            f" within the SLO in the server {sli}, a normal client's p99"
            f" {figures.get('slow_bodies.p99_decide_ms_before', '?')} ms before,"
            f" {figures.get('slow_bodies.p99_decide_ms_during', '?')} ms during; a flood answered"
            f" {figures.get('flood.answered_429', '?')} 429s")


def report(job: Nightly) -> int:
    from reports.records import RecordError
    from reports.report import exit_code, make_report, parse_fail_on

    stage = Stage("report", started_at=time.time())
    job.stages.append(stage)
    job.progress.prom = None  # nothing runs any more: no live figures
    job.progress.begin("report", f"from {job.run_dir}")
    alerts = job.copy_alerts()
    try:
        built = make_report(job.run_dir, job.env().get("PROMETHEUS_URL"),
                            job.out_dir / "history.jsonl")
    except RecordError as exc:
        stage.status, stage.detail = "error", str(exc)
        stage.ended_at = time.time()
        job.progress.end(f"ERROR: {exc}")
        job.write_manifest()
        return EXIT_ERROR
    fail_on = parse_fail_on(job.settings.fail_on)
    code = exit_code(built, fail_on)
    data = built.data
    stage.exit_code = code
    stage.status = "ok"
    stage.detail = (f"{'passed' if data['verdict']['passed'] else 'FAILED'}"
                    f" ({alerts} alert notifications); {built.files['html']}")
    for line in built.failures(fail_on):
        job.progress.say(f"  breached: {line}")
    for line in _alert_lines(data["alert_quality"]):
        job.progress.say(f"  {line}")
    for d in data["disagreements"]:
        job.progress.say(f"  CLIENT AND SERVER DISAGREE on {d['id']}: {d['delta_points']:+.3f}"
                         " points")
    stage.ended_at = time.time()
    job.progress.end(stage.detail)
    job.write_manifest()
    return code


def _alert_lines(quality: dict[str, Any]) -> list[str]:
    live = quality["live"]
    pages, false = len(live["pages"]), live["false_pages"]
    precision = "no page" if live["precision"] is None else f"{live['precision']:.2f}"
    lines = [f"alerts: live precision {precision} ({pages} page{'s' * (pages != 1)}, {false}"
             " outside a fault)"]
    for d in live["drills"]:
        caught = (f"caught by {d['caught_by']} in {d['ttd_s']} s" if d["caught_by"]
                  else f"NOT caught by {' or '.join(d['designated'])}")
        lines.append(f"alerts: {d['drill']} {caught}")
    return lines


def down(job: Nightly, stage: Stage) -> str:
    code = job.command(stage, [MESHSRE, "down", "--state-dir", job.settings.state_dir], 120)
    if code != 0:
        raise StageError(f"meshsre down exited {code}")
    return f"stopped (state, logs and data kept in {job.settings.state_dir})"
