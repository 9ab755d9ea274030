"""The constant-rate load that runs through every drill, and what the drills read from it.

The load is `meshsre loadtest` in a process of its own, outside the blast radius: it talks to
the front door (MESH_URL) only, from no zone, so a zone failure cannot hide by killing its own
witnesses. Locust is never imported here (its gevent monkey-patching deadlocks this process).

Two things are read from it while it runs and after it stops:
- the client view: Locust's ``locust_stats_history.csv`` (cumulative requests and failures,
  one row a second, flushed every 5 s), so probes can judge the last N seconds as the clients
  saw them, including the front door's own 503s that no mesh metric counts;
- the ledger: every registration acknowledged with a 201, in ``load.json`` once it stops.

As a Chaos Toolkit control (``before_experiment_control``) it makes sure the load runs before
the steady-state hypothesis is first checked, and stops the load it started at the end.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from chaoslib.exceptions import ActivityFailed, InterruptExecution

from chaos import runstate
from loadtests import ledger

__all__ = [
    "ClientView",
    "Row",
    "after_experiment_control",
    "before_experiment_control",
    "client_view",
    "ensure_load",
    "history",
    "load_is_running",
    "stop_load",
    "writes_lost",
]

HISTORY = "locust_stats_history.csv"
RECORD = "load.json"
FRESH_S = 10.0  # Locust flushes its history every 5 s: older than this, the load has stopped
_STARTED: dict[int, subprocess.Popen[bytes]] = {}  # loads this process started, to reap them


@dataclass(frozen=True)
class Row:
    t: int  # unix second
    requests: int  # cumulative
    failures: int


@dataclass(frozen=True)
class ClientView:
    seconds: int
    requests: int
    failures: int
    newest: int  # unix second of the newest row

    @property
    def error_ratio(self) -> float | None:
        return self.failures / self.requests if self.requests else None

    def as_json(self) -> dict[str, Any]:
        ratio = self.error_ratio
        return {"seconds": self.seconds, "requests": self.requests, "failures": self.failures,
                "error_ratio": None if ratio is None else round(ratio, 6),
                "rps": round(self.requests / self.seconds, 3) if self.seconds else 0.0,
                "newest_age_s": round(time.time() - self.newest, 1)}


def history(load_dir: Path) -> list[Row]:
    """The Aggregated rows of Locust's history; a half-flushed last line is skipped."""
    try:
        text = (load_dir / HISTORY).read_text()
    except FileNotFoundError:
        return []
    rows = []
    for rec in csv.DictReader(text.splitlines()):
        try:
            if rec["Name"] == "Aggregated":
                rows.append(Row(int(rec["Timestamp"]), int(rec["Total Request Count"]),
                                int(rec["Total Failure Count"])))
        except (KeyError, TypeError, ValueError):
            continue
    return rows


def client_view(rows: list[Row], window: float, until: float | None = None) -> ClientView:
    """Requests and failures in the last ``window`` seconds of the history (up to ``until``)."""
    if until is not None:
        rows = [r for r in rows if r.t <= until]
    if not rows:
        return ClientView(0, 0, 0, 0)
    newest = rows[-1]
    base = next((r for r in reversed(rows) if r.t <= newest.t - window), rows[0])
    return ClientView(newest.t - base.t, newest.requests - base.requests,
                      newest.failures - base.failures, newest.t)


def _load_dir(configuration: Mapping[str, Any] | None) -> Path | None:
    noted = runstate.notes(configuration).get("load")
    if noted:
        return Path(noted["dir"])
    return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _running(pid: int) -> bool:
    proc = _STARTED.get(pid)
    return proc.poll() is None if proc is not None else _alive(pid)


def _fresh(load_dir: Path) -> bool:
    rows = history(load_dir)
    return bool(rows) and time.time() - rows[-1].t < FRESH_S


def _wait_warm(load_dir: Path, pid: int | None, rate: float, warmup: float) -> ClientView:
    deadline = time.monotonic() + warmup + 30.0
    while True:
        view = client_view(history(load_dir), warmup)
        if view.seconds >= warmup * 0.8 and view.requests >= 0.5 * rate * view.seconds:
            return view
        if pid is not None and not _running(pid):
            raise ActivityFailed(f"the load exited during warm-up: see {load_dir}/load.log")
        if time.monotonic() > deadline:
            raise ActivityFailed(f"the load did not reach {rate:g}/s within {warmup + 30:.0f} s"
                                 f" (last {warmup:.0f} s: {view.as_json()}); see {load_dir}")
        time.sleep(1.0)


def ensure_load(configuration: Mapping[str, Any] | None = None,
                secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Make sure a constant-rate load runs: reuse MESHSRE_LOAD_DIR's if it is live, else start
    one (bounded by load_seconds), and wait until it has sent for load_warmup seconds."""
    notes = runstate.notes(configuration)
    rate = runstate.number(configuration, "load_rate", 20.0)
    warmup = runstate.number(configuration, "load_warmup", 10.0)
    noted = notes.get("load")
    if noted and (_alive(noted.get("pid")) or not noted["owned"]) and _fresh(Path(noted["dir"])):
        return {**noted, "reused": True}
    external = runstate.setting(configuration, "load_dir", "MESHSRE_LOAD_DIR", "")
    if external and _fresh(Path(external)):
        info = {"dir": str(Path(external).resolve()), "owned": False, "pid": None,
                "rate": rate, "started_at": None}
        notes.set("load", info)
        return {**info, "reused": True}
    try:
        mesh_url = runstate.mesh_url(configuration)
    except ValueError as exc:
        raise ActivityFailed(str(exc)) from exc
    load_dir = runstate.run_dir(configuration) / f"load-{runstate.drill(configuration)}"
    load_dir.mkdir(parents=True, exist_ok=True)
    seconds = int(runstate.number(configuration, "load_seconds", 600.0))
    argv = [str(Path(sys.executable).with_name("meshsre")), "loadtest", "--host", mesh_url,
            "--rate", f"{rate:g}", "--users", str(int(runstate.number(configuration,
                                                                     "load_users", 10))),
            "--duration", f"{seconds}s", "--run-id", load_dir.name,
            "--out", str(load_dir.parent), "--revocation-every", "0", "--quiet"]
    env = {**os.environ, "MESH_ADMIN_TOKEN": runstate.admin_token(secrets)}
    with open(load_dir / "load.log", "ab") as log:
        # A session of its own: a Ctrl-C meant for `chaos run` must not cut the witness off
        # before the rollbacks stop it and read its ledger.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _STARTED[proc.pid] = proc
    info = {"dir": str(load_dir), "owned": True, "pid": proc.pid, "rate": rate,
            "started_at": time.time(), "max_seconds": seconds}
    notes.set("load", info)
    view = _wait_warm(load_dir, proc.pid, rate, warmup)
    return {**info, "reused": False, "warm": view.as_json()}


def load_is_running(window: float = 10.0, configuration: Mapping[str, Any] | None = None,
                    secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The load sends at (at least 80% of) its target rate right now; fails otherwise."""
    load_dir = _load_dir(configuration)
    if load_dir is None:
        raise ActivityFailed("no load was started for this run (is the chaos.load control on?)")
    rate = float(runstate.notes(configuration).get("load", {}).get("rate", 0.0))
    view = client_view(history(load_dir), window)
    result = {"dir": str(load_dir), "target_rate": rate, **view.as_json()}
    if not _fresh(load_dir):
        raise ActivityFailed(f"the load is not running: its newest sample is"
                             f" {result['newest_age_s']} s old ({load_dir})")
    if view.seconds and view.requests / view.seconds < 0.8 * rate:
        raise ActivityFailed(f"the load sends {result['rps']}/s, below 80% of {rate:g}/s")
    return result


def run_for(seconds: float = 30.0, since: str = "",
            configuration: Mapping[str, Any] | None = None,
            secrets: Mapping[str, Any] | None = None) -> float:
    """Lets the load run until ``seconds`` have passed since the moment the fault's notes
    call ``since`` (now, without one), so that what follows (the steady state after a
    fault, say) is judged on the clients' requests since. Returns the seconds waited."""
    seconds = float(seconds)  # `--var` values arrive as text
    mark = (runstate.notes(configuration).get("fault") or {}).get(since) if since else None
    wait = max(0.0, float(mark) + seconds - time.time()) if mark else seconds
    time.sleep(wait)
    return round(wait, 3)


def _locust_children(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [k for k in kids if "locust" in " ".join(k.cmdline())]


def stop_load(timeout: float = 60.0, configuration: Mapping[str, Any] | None = None,
              secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Stop the load this run started and wait for its record (with the ledger); idempotent.
    SIGINT, not SIGTERM: Locust shuts down cleanly (writing load.json) only on an interrupt."""
    noted = runstate.notes(configuration).get("load")
    if not noted:
        return {"stopped": False, "reason": "no load was started"}
    load_dir = Path(noted["dir"])
    if not noted["owned"]:
        return {"stopped": False, "reason": "the load is someone else's", "dir": str(load_dir)}
    pid = int(noted["pid"])
    signalled = []
    for child in _locust_children(pid):
        try:
            child.send_signal(signal.SIGINT)
            signalled.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + float(timeout)
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _running(pid):
        if pid in _STARTED:  # only a process we hold can be signalled without a doubt
            os.killpg(pid, signal.SIGKILL)  # its session: the load runner and its Locust
            _STARTED.pop(pid).wait()
        raise ActivityFailed(f"the load did not stop within {timeout:.0f} s and was killed")
    _STARTED.pop(pid, None)
    record = load_dir / RECORD
    return {"stopped": bool(signalled), "dir": str(load_dir), "record": str(record),
            "record_exists": record.exists(), "ran_s": round(time.time() - noted["started_at"], 1)}


def acknowledged(configuration: Mapping[str, Any] | None) -> list[ledger.Ack] | None:
    """The ledger of the stopped load, or None while it runs (or is not ours)."""
    load_dir = _load_dir(configuration)
    if load_dir is None or not (load_dir / RECORD).exists():
        return None
    return ledger.load(load_dir / RECORD)


def writes_lost(configuration: Mapping[str, Any] | None = None,
                secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every registration the load saw acknowledged must still exist; target 0 lost."""
    acks = acknowledged(configuration)
    if acks is None:
        if not (runstate.notes(configuration).get("load") or {}).get("owned", True):
            # Someone else's load (MESHSRE_LOAD_DIR) is still running: its owner checks it.
            return {"acknowledged": None, "lost": None, "skipped": "the load is not ours"}
        raise ActivityFailed("the load's ledger is not there yet: stop the load first")
    try:
        lost = ledger.missing(runstate.mesh_url(configuration), [a.did for a in acks])
    except ledger.LedgerCheckError as exc:
        raise ActivityFailed(str(exc)) from exc
    result = {"acknowledged": len(acks), "lost": len(lost), "lost_dids": lost[:20]}
    runstate.notes(configuration).merge("measurements", {
        "writes_acknowledged": len(acks), "writes_lost": len(lost)})
    runstate.notes(configuration).merge("objectives", {"writes-lost": {
        "target": "== 0", "measured": len(lost), "met": not lost}})
    if lost:
        raise ActivityFailed(f"{len(lost)} of {len(acks)} acknowledged writes are lost:"
                             f" {', '.join(lost[:5])}")
    return result


# -- as a Chaos Toolkit control ---------------------------------------------------------------
def before_experiment_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                              secrets: dict[str, Any] | None = None, **_: Any) -> None:
    # Before the hypothesis: "availability over the last minute" needs traffic to judge.
    # Chaos Toolkit swallows a control's exceptions; without a load the run means nothing.
    try:
        ensure_load(configuration, secrets)
    except ActivityFailed as exc:
        raise InterruptExecution(f"cannot start the load: {exc}") from exc


def after_experiment_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                             secrets: dict[str, Any] | None = None, **_: Any) -> None:
    stop_load(configuration=configuration, secrets=secrets)
