"""Agents calling a tool through their governance sidecars, and the same tool directly, in
one run: the difference of the two latencies is what governance costs a tool call.

    $ locust -f loadtests/sidecar_locustfile.py --headless -u 16 -t 60s --rate 200 \\
        --host http://127.0.0.1:9000 --sidecars http://127.0.0.1:15001,http://127.0.0.1:15002

``--host`` is the tool's upstream. Each user stands for an agent's thread: it is bound to one
sidecar (users spread over them) and alternates a call through it with the same call made
directly, each on the pacer's schedule, so both paths see the same moments of the run. The
two are separate rows: ``GET via sidecar`` and ``GET direct``. With ``--revoking-after S``,
calls from S seconds on are rows of their own (``... while revoking``): a revocation costs
the next call a fresh decision, which is not what a quiet call costs.
"""

from __future__ import annotations

import itertools
import time

from locust import FastHttpUser, constant, task

from loadtests import hooks
from loadtests.governance import DIRECT, REVOKING, VIA_SIDECAR
from loadtests.shapes import SoakShape, SpikeShape, SteadyShape, StepShape  # noqa: F401

_USERS = itertools.count()


class ToolCaller(FastHttpUser):
    wait_time = constant(0)  # the pacer decides when to send
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        opts = hooks.options(self.environment)
        sidecars = [u.strip().rstrip("/") for u in opts.sidecars.split(",") if u.strip()]
        if not sidecars:
            raise ValueError("the sidecar workload needs --sidecars URL[,URL...]")
        sidecar = sidecars[next(_USERS) % len(sidecars)]
        # The same request both ways: the tool's /call, or the sidecar's /tools/<tool>/call.
        self.paths = {VIA_SIDECAR: f"{sidecar}/tools/{opts.tool}/call", DIRECT: "/call"}
        self.through = False
        self.revoking_after = float(opts.revoking_after)
        hooks.harness().ready_users += 1

    @task
    def call(self) -> None:
        self.through = not self.through
        name = VIA_SIDECAR if self.through else DIRECT
        harness = hooks.harness()
        intended = harness.wait_for_slot()
        late = self.revoking_after and time.time() - harness.started >= self.revoking_after
        lag = max(0.0, time.monotonic() - intended)
        with self.client.get(self.paths[name], name=name + REVOKING if late else name,
                             context={"lag": lag},
                             catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
            else:
                resp.success()
