"""Settings of the nightly job, all from the environment, with two sets of defaults: the full
night (an AZ failure in every fault mode, each two to three minutes) and ``NIGHTLY_QUICK=1``
(the blackhole mode only, for CI). ``NIGHTLY_ZONE_MODES=power,loss:5``
picks the modes. Both run on the zonal Patroni tier, so that the ``data`` fault (the
data-failover drill) runs too; ``NIGHTLY_STORAGE=sqlite`` runs without it.

Every duration and rate can be overridden (``NIGHTLY_RATE=50``, ``NIGHTLY_STEADY_SECONDS=300``
...), and ``NIGHTLY_VAR_<KEY>=VALUE`` passes any other setting of the chaos experiments
through as ``--var key=value`` (``NIGHTLY_VAR_ZONE=b``).

>>> s = Settings.from_env({"NIGHTLY_QUICK": "1", "NIGHTLY_RATE": "12"})
>>> s.quick, s.rate, s.steady_seconds, s.storage
(True, 12.0, 10, 'patroni')
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mesh import faults
from reports.report import parse_fail_on

__all__ = ["FULL", "QUICK", "Settings", "SettingsError"]


class SettingsError(ValueError):
    """A setting the job cannot use: the message names the variable."""


# name -> (full night, quick); every one is NIGHTLY_<NAME upper-cased>.
FULL: dict[str, Any] = {
    "replicas": 2, "rate": 30.0, "users": 20, "steady_seconds": 120, "warmup_seconds": 15,
    "observe_seconds": 60, "detect_timeout": 150, "drill_load_rate": 20.0,
    "stage_timeout": 600, "progress_seconds": 10.0,
    "sidecars_per_zone": 1, "governance_seconds": 60, "governance_rate": 60.0,
    "revocation_rounds": 20,
}
# Quick: under 5 minutes on two cores with the data-failover drill (about a minute). A drill's
# load needs its 8 s of warm-up: with 5, its rate check read 11/s of 15 and the data drill's
# "before" window had no requests yet.
QUICK: dict[str, Any] = {
    "replicas": 1, "rate": 20.0, "users": 10, "steady_seconds": 10, "warmup_seconds": 8,
    "observe_seconds": 15, "detect_timeout": 100, "drill_load_rate": 15.0,
    "stage_timeout": 300, "progress_seconds": 5.0,
    "sidecars_per_zone": 1, "governance_seconds": 10, "governance_rate": 40.0,
    "revocation_rounds": 10,
}
# The AZ failure's modes (mesh/faults.py), one chaos stage each: NIGHTLY_ZONE_MODES, comma-
# separated. The data mode is a drill of its own (data-failover), on the Patroni tier.
ZONE_MODES = {"full": ("power", "blackhole", "loss:20", "partition"), "quick": ("blackhole",)}
VAR_PREFIX = "NIGHTLY_VAR_"
ZERO_ALLOWED = frozenset({"sidecars_per_zone"})  # 0: no sidecars, no governance stage


@dataclass(frozen=True)
class Settings:
    quick: bool
    run_id: str
    platform: str  # local: start and stop a local cluster; kubernetes: use MESH_URL as is
    state_dir: str
    zones: str
    storage: str
    fail_on: str
    replicas: int
    rate: float
    users: int
    steady_seconds: int
    warmup_seconds: int
    observe_seconds: int
    detect_timeout: int
    drill_load_rate: float
    stage_timeout: int
    progress_seconds: float
    sidecars_per_zone: int
    governance_seconds: int
    governance_rate: float
    revocation_rounds: int
    mesh_url: str = ""
    prometheus_url: str = ""
    alertmanager_url: str = ""
    admin_token: str = field(default="", repr=False)
    variables: dict[str, str] = field(default_factory=dict)  # passed to every experiment
    zone_modes: tuple[str, ...] = ZONE_MODES["full"]

    @property
    def local(self) -> bool:
        return self.platform == "local"

    def public(self) -> dict[str, Any]:
        """For run.json: everything but the token."""
        return {k: v for k, v in asdict(self).items() if k != "admin_token"}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        quick = env.get("NIGHTLY_QUICK", "") not in ("", "0", "false", "no")
        numbers: dict[str, Any] = {}
        for name, default in (QUICK if quick else FULL).items():
            key = f"NIGHTLY_{name.upper()}"
            raw = env.get(key, "")
            try:
                value = type(default)(raw) if raw else default
            except ValueError:
                raise SettingsError(f"{key}={raw!r}: not a number") from None
            if value < 0 or (value == 0 and name not in ZERO_ALLOWED):
                raise SettingsError(f"{key}={raw!r}: must be positive")
            numbers[name] = value
        platform = env.get("MESH_PLATFORM", "") or "local"
        if platform not in ("local", "kubernetes"):
            raise SettingsError(f"MESH_PLATFORM={platform!r}: use local or kubernetes")
        if platform != "local":
            missing = [k for k in ("MESH_URL", "PROMETHEUS_URL") if not env.get(k)]
            if missing:
                raise SettingsError(f"MESH_PLATFORM={platform} needs {' and '.join(missing)}"
                                    " (the job does not start or stop a remote mesh)")
        fail_on = env.get("NIGHTLY_FAIL_ON") or "slo,drill,alerts,check"
        try:
            parse_fail_on(fail_on)
        except ValueError as exc:
            raise SettingsError(f"NIGHTLY_FAIL_ON={fail_on!r}: {exc}") from None
        raw_modes = env.get("NIGHTLY_ZONE_MODES", "")
        try:
            modes = tuple(str(faults.parse(m)) for m in raw_modes.split(",") if m.strip()) \
                if raw_modes else ZONE_MODES["quick" if quick else "full"]
        except faults.FaultModeError as exc:
            raise SettingsError(f"NIGHTLY_ZONE_MODES={raw_modes!r}: {exc}") from None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return cls(
            quick=quick, run_id=env.get("NIGHTLY_RUN_ID") or f"{stamp}-nightly",
            platform=platform, state_dir=env.get("NIGHTLY_STATE_DIR") or ".meshsre/nightly",
            zones=env.get("NIGHTLY_ZONES") or "a,b,c",
            storage=env.get("NIGHTLY_STORAGE") or "patroni",
            fail_on=fail_on,
            mesh_url=env.get("MESH_URL", "") if platform != "local" else "",
            prometheus_url=env.get("PROMETHEUS_URL", "") if platform != "local" else "",
            alertmanager_url=env.get("ALERTMANAGER_URL", "") if platform != "local" else "",
            admin_token=env.get("MESH_ADMIN_TOKEN", "") if platform != "local" else "",
            variables={k.removeprefix(VAR_PREFIX).lower(): v for k, v in sorted(env.items())
                       if k.startswith(VAR_PREFIX)},
            zone_modes=modes,
            **numbers,
        )
