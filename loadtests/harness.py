"""One Locust process's share of a load test (imports Locust: load it only there).

Every process has a pacer (and the clock that releases its slots), a recorder of every
request, the ledger and a CPU sampler. A worker sends what it measured to the master with each
stats report. The master (or the single local runner) also sets the pacers' rate from the
shape, samples users, workers and CPU every second, scrapes the replicas for the server-side
SLIs and runs the revocation probe.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from typing import Any

import gevent
import gevent.queue
import psutil
from locust.env import Environment
from locust.runners import MasterRunner, Runner, WorkerRunner

from loadtests.ledger import Ledger
from loadtests.pacer import Pacer
from loadtests.recorder import Recorder
from loadtests.revocation import ProbeError, Propagation, RevocationProbe
from loadtests.shapes import PacedShape
from loadtests.sli import Snapshot, host_target, scrape

__all__ = ["RATE_MESSAGE", "Harness", "options"]

log = logging.getLogger("meshsre.loadtest")
RATE_MESSAGE = "meshsre_rate"  # master -> workers: each worker's share of the target rate


def options(environment: Environment) -> Any:
    """Locust's parsed options (with ours); always set in a process started by ``locust``."""
    if environment.parsed_options is None:
        raise RuntimeError("loadtests needs Locust's command line options: run it with locust")
    return environment.parsed_options



class Harness:
    def __init__(self, environment: Environment) -> None:
        opts = options(environment)
        self.env = environment
        self.pacer = Pacer(max_lag=opts.max_lag)
        self.recorder = Recorder(late_after_ms=opts.late_after * 1000)
        self.ledger = Ledger()
        self.per_second: dict[int, dict[str, Any]] = defaultdict(dict)
        self.cpu_samples: dict[str, list[float]] = defaultdict(list)  # process -> % per second
        self.cpu_seconds: dict[str, float] = {}
        self.propagations: list[Propagation] = []
        self.probe_errors: list[str] = []
        self.workers_seen: list[tuple[float, int]] = []
        self.started = self.ended = 0.0
        self.admin_token = os.environ.get("MESH_ADMIN_TOKEN") or None
        self._greenlets: list[gevent.Greenlet] = []
        self._process = psutil.Process()
        self._cpu_base = 0.0
        self._cpu_new: list[list[float]] = []  # worker: samples not yet reported
        self.slots: gevent.queue.Queue[float] = gevent.queue.Queue()
        self.ready_users = 0  # users done with their setup: no slot is released before one is
        self.metrics_before: dict[str, Snapshot] | None = None  # every replica, at the start
        # Whose /metrics give the server-side SLIs: the replicas named, or the host itself
        # when it is one mesh process; none (client timings) says why in sli_fallback.
        self.sli_targets: list[str] = []
        self.sli_fallback = ""

    @property
    def runner(self) -> Runner:
        assert self.env.runner is not None
        return self.env.runner

    @property
    def is_worker(self) -> bool:
        return isinstance(self.runner, WorkerRunner)

    @property
    def label(self) -> str:
        return "master" if not self.is_worker else f"worker-{os.getpid()}"

    def wait_for_slot(self) -> float:
        """Block until a request slot is released; returns its intended (monotonic) time."""
        while True:
            slot = float(self.slots.get())
            if time.monotonic() - slot <= self.pacer.max_lag:
                return slot
            self.pacer.drop(1, int(time.time()))

    def _release_slots(self) -> None:
        """The pacer's clock: queue every due slot, drop what waited longer than max_lag."""
        while not self.ready_users:
            gevent.sleep(0.01)
        self.pacer.restart(time.monotonic())  # the schedule starts with the first ready user
        while True:
            now, second = time.monotonic(), int(time.time())
            for slot in self.pacer.due(now, second):
                self.slots.put(slot)
            while self.slots.qsize() and self.slots.peek_nowait() < now - self.pacer.max_lag:
                self.slots.get_nowait()
                self.pacer.drop(1, second)
            due = self.pacer.next_due
            gevent.sleep(0.05 if due is None else min(0.05, max(0.0, due - time.monotonic())))

    # -- per process ---------------------------------------------------------------------
    def start(self) -> None:
        self.started = time.time()
        times = self._process.cpu_times()
        self._cpu_base = times.user + times.system
        self._process.cpu_percent(None)
        self._greenlets.append(gevent.spawn(self._sample_cpu))
        if not isinstance(self.runner, MasterRunner):  # the master has no users
            self._greenlets.append(gevent.spawn(self._release_slots))
        if not self.is_worker:
            self._choose_sli_targets()
            self._greenlets.append(gevent.spawn(self._control))
            if self.admin_token and options(self.env).revocation_every > 0:
                self._greenlets.append(gevent.spawn(self._probe_revocations))

    def stop(self) -> None:
        """The test is stopping: no more slots, probes or samples; leftovers count as dropped."""
        self.ended = time.time()
        self._kill_greenlets()
        self.pacer.set_rate(0.0, time.monotonic())
        left = self.slots.qsize()  # released but never sent
        while self.slots.qsize():
            self.slots.get_nowait()
        self.pacer.drop(left, int(time.time()))

    def _kill_greenlets(self) -> None:
        current = gevent.getcurrent()
        gevent.killall([g for g in self._greenlets if g is not current])
        self._greenlets.clear()
        self.cpu_seconds[self.label] = self._cpu_total()

    def _cpu_total(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system - self._cpu_base

    def _sample_cpu(self) -> None:
        while True:
            gevent.sleep(1.0)
            pct = self._process.cpu_percent(None)
            second = int(time.time())
            if self.is_worker:
                self._cpu_new.append([second, pct])
            else:
                self._add_cpu(self.label, second, pct)
            self.cpu_seconds[self.label] = self._cpu_total()

    def _add_cpu(self, label: str, second: int, pct: float) -> None:
        self.cpu_samples[label].append(pct)
        row = self.per_second[second]
        row["cpu_percent"] = max(row.get("cpu_percent", 0.0), round(pct, 1))

    def _add_pacing(self, offered: dict[int, int], dropped: dict[int, int]) -> None:
        for second, n in offered.items():
            row = self.per_second[int(second)]
            row["offered"] = row.get("offered", 0) + n
        for second, n in dropped.items():
            row = self.per_second[int(second)]
            row["dropped"] = row.get("dropped", 0) + n

    # -- worker -> master ----------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        offered, dropped = self.pacer.drain()
        cpu, self._cpu_new = self._cpu_new, []
        return {"cells": self.recorder.drain(), "ledger": self.ledger.drain(),
                "offered": list(offered.items()), "dropped": list(dropped.items()),
                "cpu": cpu, "cpu_seconds": self._cpu_total(), "label": self.label}

    def merge(self, data: dict[str, Any]) -> None:
        self.recorder.merge(data["cells"])
        self.ledger.merge(data["ledger"])
        self._add_pacing(dict(data["offered"]), dict(data["dropped"]))
        for second, pct in data["cpu"]:
            self._add_cpu(data["label"], int(second), float(pct))
        self.cpu_seconds[data["label"]] = float(data["cpu_seconds"])

    # -- master (or local) -----------------------------------------------------------------
    def target_rate(self) -> float:
        shape = self.env.shape_class
        if isinstance(shape, PacedShape):
            return shape.target_rate()
        return float(options(self.env).rate)

    def _control(self) -> None:
        """Set the pacers' rate from the shape (5 times a second), sample once a second."""
        last_second, sent_share = 0, -1.0
        while not self.ended:  # after the stop, workers leaving is the shutdown, not a loss
            rate = self.target_rate()
            if isinstance(self.runner, MasterRunner):
                share = rate / max(1, self.runner.worker_count)
                if share != sent_share or int(time.time()) != last_second:
                    self.runner.send_message(RATE_MESSAGE, {"rate": share})
                    sent_share = share
            else:
                self.pacer.set_rate(rate, time.monotonic())
            second = int(time.time())
            if second != last_second:
                last_second = second
                self._sample(second, rate)
            gevent.sleep(0.2)

    def _sample(self, second: int, rate: float) -> None:
        row = self.per_second[second]
        row["target_rate"] = round(rate, 3)
        row["users"] = self.runner.user_count
        if isinstance(self.runner, MasterRunner):
            row["workers"] = self.runner.worker_count
            self.workers_seen.append((time.time() - self.started, self.runner.worker_count))
        else:
            self._add_pacing(*self.pacer.drain())
        # Worker reports arrive every 3 s: a second 10 s old can no longer change.
        self.recorder.finish(before=second - 10)

    def sli_replicas(self) -> list[str]:
        """Replicas named by --replicas: the only ones whose /metrics can be read one by one."""
        return [u.strip() for u in options(self.env).replicas.split(",") if u.strip()]

    def _choose_sli_targets(self) -> None:
        targets, why = self.sli_replicas(), ""
        if not targets:
            targets, why = host_target(str(self.env.host).rstrip("/"))
        before = scrape(targets) if targets else None
        if before is None:
            why = why or f"the replicas' /metrics could not be read ({', '.join(targets)})"
            targets = []
        self.sli_targets, self.sli_fallback, self.metrics_before = targets, why, before
        if why:
            log.warning("server-side SLIs unavailable, judging latency on client timings: %s",
                        why)

    def replicas(self) -> list[str]:
        return self.sli_replicas() or [str(self.env.host)]

    def _probe_revocations(self) -> None:
        probe = RevocationProbe(self.replicas(), str(self.admin_token), sleep=gevent.sleep)
        every = float(options(self.env).revocation_every)
        index, in_ledger = 0, False
        gevent.sleep(min(2.0, every))  # let the users register first
        try:
            while True:
                try:
                    self.propagations += probe.run_once(index)
                except ProbeError as exc:
                    self.probe_errors.append(str(exc))
                    log.warning("revocation probe: %s", exc)
                if probe.registered_at is not None and not in_ledger:
                    self.ledger.add(probe.key.did, probe.registered_at)
                    in_ledger = True
                index += 1
                gevent.sleep(every)
        finally:
            probe.close()

    def halt(self) -> None:
        """Quitting (after ``stop``, or instead of it): nothing may run any more."""
        self._kill_greenlets()
        if not self.is_worker:
            self._add_pacing(*self.pacer.drain())  # the last seconds' counts
        if not self.ended:
            self.ended = time.time()
