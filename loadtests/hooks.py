"""Locust glue shared by every meshsre locustfile (imports Locust: load it only there).

It adds the workload's options, gives each process a ``Harness`` per test run, records every
request, carries the workers' measurements to the master, and at quit judges the thresholds,
writes load.json and sets the exit code: 0 passed, 1 a threshold breached, 3 the run is
invalid. A locustfile only imports this module and calls ``harness()``.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import Runner, WorkerRunner

from loadtests.harness import RATE_MESSAGE, Harness, options
from loadtests.profiles import PROFILES
from loadtests.recorder import error_kind
from loadtests.shapes import SHAPES, PacedShape
from loadtests.verdict import finish_run

__all__ = ["SETUP", "harness", "options"]

logging.getLogger("httpx").setLevel(logging.WARNING)  # the probe's every request is noise
SETUP = "[setup] "  # name prefix of requests outside the measured workload
_HARNESS: Harness | None = None


def harness() -> Harness:
    if _HARNESS is None:
        raise RuntimeError("loadtests.hooks is not initialised: run this file with locust")
    return _HARNESS


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--rate", type=_positive(float), default=20.0,
                        help="Requests/s offered by all users together (open model)")
    parser.add_argument("--shape", choices=sorted(PROFILES), default="steady",
                        help="Load profile: steady, step, spike or soak")
    parser.add_argument("--run-id", default="", help="Run id (default: UTC time + '-load')")
    parser.add_argument("--run-dir", default="", help="Where load.json goes"
                        " (default: reports/out/<run-id>)")
    parser.add_argument("--max-lag", type=_positive(float), default=5.0,
                        help="Seconds after its intended time a request is dropped, not sent")
    parser.add_argument("--late-after", type=_positive(float), default=0.05,
                        help="Seconds after its intended time a sent request counts as late")
    parser.add_argument("--agents-per-user", type=_positive(int), default=4,
                        help="Agents each user registers before the measured run")
    parser.add_argument("--replicas", default="", help="Comma-separated replica URLs the"
                        " revocation probe revokes through and polls (default: the host)")
    parser.add_argument("--sidecars", default="", help="Comma-separated sidecar URLs (the"
                        " sidecar workload: tool calls through them, and directly to --host)")
    parser.add_argument("--tool", default="echo", help="The tool the sidecars govern,"
                        " whose upstream is --host (the sidecar workload)")
    parser.add_argument("--revoking-after", type=float, default=0.0, help="Seconds into the"
                        " run after which the sidecar workload's calls are named '... while"
                        " revoking' (0: never): revocations start then")
    parser.add_argument("--revocation-every", type=float, default=5.0,
                        help="Seconds between revocation probes (0: off; needs"
                        " MESH_ADMIN_TOKEN)")


# -- event wiring ------------------------------------------------------------------------
def select_shape(environment: Environment, runner: Runner) -> None:
    """Honour --shape unless the web UI's class picker chooses."""
    opts = options(environment)
    current = environment.shape_class
    if getattr(opts, "class_picker", False) or isinstance(runner, WorkerRunner):
        return
    if current is None or (isinstance(current, PacedShape) and current.profile != opts.shape):
        shape = SHAPES[opts.shape]()
        shape.runner = runner
        environment.shape_class = shape


@events.init.add_listener
def _init(environment: Environment, runner: Runner, **_: Any) -> None:
    global _HARNESS
    _HARNESS = Harness(environment)
    select_shape(environment, runner)
    if isinstance(runner, WorkerRunner):
        runner.register_message(RATE_MESSAGE, lambda environment, msg, **_: harness().pacer
                                .set_rate(float(msg.data["rate"]), time.monotonic()))


@events.test_start.add_listener
def _test_start(environment: Environment, **_: Any) -> None:
    global _HARNESS
    previous = harness()
    previous.halt()
    _HARNESS = Harness(environment)  # a fresh run (the web UI can start several)
    _HARNESS.start()


@events.test_stopping.add_listener
def _test_stopping(**_: Any) -> None:
    harness().stop()


@events.request.add_listener
def _request(request_type: str, name: str, response_time: float, response: Any,
             context: dict[str, Any] | None, exception: BaseException | None,
             **_: Any) -> None:
    if name.startswith(SETUP):
        return
    status = int(getattr(response, "status_code", 0) or 0)
    lag = (context or {}).get("lag")
    harness().recorder.record(request_type, name, status, float(response_time or 0.0),
                              lag_ms=None if lag is None else lag * 1000.0,
                              failed=exception is not None, second=int(time.time()),
                              kind=error_kind(status, exception))


@events.report_to_master.add_listener
def _report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    if _HARNESS is not None:
        data["meshsre"] = _HARNESS.report()


@events.worker_report.add_listener
def _worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    if "meshsre" in data:
        harness().merge(data["meshsre"])


@events.quitting.add_listener
def _quitting(environment: Environment, **_: Any) -> None:
    h = harness()
    h.halt()
    if h.is_worker or not h.started:
        return
    # The exit code follows the thresholds and the run's validity, not Locust's default
    # (non-zero as soon as any request failed).
    environment.process_exit_code = finish_run(h, environment)
