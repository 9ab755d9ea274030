"""The drills' clock, as a Chaos Toolkit control: when each phase and activity began and ended,
when the fault began and when it ended, and the run record written at the very end.

Declared in every experiment with the names of its fault and recovery activities::

    {"name": "meshsre-clock", "provider": {"type": "python", "module": "chaos.control",
     "arguments": {"faults": ["fail-zone"], "recoveries": ["restore-zone"]}}}

The fault starts when the first fault activity is about to run (time to detect and time to
recover count from there) and ends when the first recovery activity has succeeded. Chaos
Toolkit swallows a control's exceptions, so nothing here may be needed for the run to be
judged: the journal is the evidence, the clock only adds times to it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from chaos import record, runstate

__all__ = [
    "after_activity_control",
    "after_experiment_control",
    "after_hypothesis_control",
    "after_method_control",
    "after_rollback_control",
    "before_activity_control",
    "before_experiment_control",
    "before_hypothesis_control",
    "before_method_control",
    "before_rollback_control",
]

log = logging.getLogger("chaostoolkit")


def _event(configuration: dict[str, Any] | None, event: str, **fields: Any) -> float:
    at = time.time()
    runstate.notes(configuration).append("timeline", {"event": event, "at": round(at, 3),
                                                       **fields})
    return at


def before_experiment_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                              **_: Any) -> None:
    started = time.time()
    runstate.notes(configuration).reset({
        "drill": runstate.drill(configuration), "started_at": round(started, 3),
        "platform": os.environ.get("MESH_PLATFORM") or "local",
        "run_dir": str(runstate.run_dir(configuration)), "timeline": [], "fault": {},
        "measurements": {}, "objectives": {}})


def _phase(name: str, edge: str) -> Any:
    def hook(context: dict[str, Any], configuration: dict[str, Any] | None = None,
             **_: Any) -> None:
        _event(configuration, f"{name}-{edge}")

    hook.__name__ = f"{'before' if edge == 'start' else 'after'}_{name}_control"
    return hook


before_hypothesis_control = _phase("hypothesis", "start")
after_hypothesis_control = _phase("hypothesis", "end")
before_method_control = _phase("method", "start")
after_method_control = _phase("method", "end")
before_rollback_control = _phase("rollback", "start")
after_rollback_control = _phase("rollback", "end")


def before_activity_control(context: dict[str, Any], faults: Sequence[str] = (),
                            recoveries: Sequence[str] = (),
                            configuration: dict[str, Any] | None = None, **_: Any) -> None:
    name = context.get("name", "")
    at = _event(configuration, "activity-start", activity=name)
    notes = runstate.notes(configuration)
    if name in faults and "started_at" not in notes.get("fault", {}):
        notes.merge("fault", {"started_at": round(at, 3), "activity": name})
        log.info("meshsre: fault %s started at %.3f", name, at)


def after_activity_control(context: dict[str, Any], state: dict[str, Any] | None = None,
                           faults: Sequence[str] = (), recoveries: Sequence[str] = (),
                           configuration: dict[str, Any] | None = None, **_: Any) -> None:
    name = context.get("name", "")
    status = (state or {}).get("status")
    at = _event(configuration, "activity-end", activity=name, status=status)
    notes = runstate.notes(configuration)
    fault = notes.get("fault", {})
    if name in faults and "injected_at" not in fault:
        notes.merge("fault", {"injected_at": round(at, 3), "injected": status == "succeeded"})
    if (name in recoveries and status == "succeeded" and "started_at" in fault
            and "ended_at" not in fault):
        notes.merge("fault", {"ended_at": round(at, 3), "recovery": name})
        log.info("meshsre: fault ended by %s at %.3f", name, at)


def after_experiment_control(context: dict[str, Any], state: dict[str, Any] | None = None,
                             configuration: dict[str, Any] | None = None, **_: Any) -> None:
    """Write reports/out/<run-id>/chaos-<drill>.json from the journal and the notes."""
    if not state:
        return
    notes = runstate.notes(configuration)
    notes.set("ended_at", round(time.time(), 3))
    path = record.write(runstate.run_dir(configuration), record.build(state, notes.read()))
    log.info("meshsre: run record %s", path)
