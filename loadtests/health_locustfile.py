"""The smallest paced workload: GET /health/live, through the same pacer and recorder.

It measures the generator itself (``loadtests.bench`` compares its requests/s per core with
wrk) and the coordinated-omission correction against a server that stalls on purpose.

    $ locust -f loadtests/health_locustfile.py --headless -u 4 -t 10s --rate 200 --host URL
"""

from __future__ import annotations

import time

from locust import FastHttpUser, constant, task

from loadtests import hooks
from loadtests.shapes import SoakShape, SpikeShape, SteadyShape, StepShape  # noqa: F401


class HealthUser(FastHttpUser):
    wait_time = constant(0)  # the pacer decides when to send
    network_timeout = 10.0

    def on_start(self) -> None:
        hooks.harness().ready_users += 1

    @task
    def live(self) -> None:
        intended = hooks.harness().wait_for_slot()
        lag = max(0.0, time.monotonic() - intended)
        self.client.get("/health/live", name="/health/live", context={"lag": lag})
