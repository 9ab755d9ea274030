"""Configuration files of the local cluster, rendered from the jinja2 templates beside this file.

Rendering is deterministic: the same state gives byte-identical files, so a test can render
twice and compare, and the real tools (`haproxy -c`, `promtool check config`, `amtool
check-config`) can validate what `up` would run.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from mesh.local import datatier
from mesh.local.state import ClusterState, StateDir
from mesh.settings import Settings

__all__ = [
    "RULES_DIR",
    "TIMINGS",
    "front_door_timeouts",
    "mesh_targets",
    "render_all",
    "render_file",
]

# The generated SLO and alert rules (issue 4) land here; load whatever exists.
RULES_DIR = Path(__file__).resolve().parents[2] / "alerts" / "build"
# Short intervals for local runs: drills measure seconds, and the defaults (1m) would hide them.
TIMINGS = {
    "scrape_interval": "2s",
    "scrape_timeout": "1s",
    "evaluation_interval": "1s",
    "group_wait": "1s",
    "group_interval": "5s",
    "repeat_interval": "4h",
}

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)


def mesh_targets(state: ClusterState) -> list[dict[str, object]]:
    """Prometheus file_sd target groups: one per replica, labelled with its zone and replica."""
    return [
        {"targets": [r.address], "labels": {"zone": r.zone, "replica": r.replica}}
        for r in state.replicas()
    ]


def render_file(
    template: str, state: ClusterState, paths: StateDir, rules_dir: Path = RULES_DIR
) -> str:
    haproxy = state.component("haproxy")
    webhook = state.component("webhook")
    context: dict[str, object] = {
        **TIMINGS,
        "replicas": state.replicas(),
        "sidecars": state.sidecars(),
        "data_tier": state.data_tier,
        "pg_members": state.data_members(),
        "etcd_members": state.data_members("etcd"),
        "haproxy": haproxy,
        "haproxy_stats": f"{haproxy.host}:{haproxy.aux_port}" if haproxy else None,
        "prometheus": state.component("prometheus"),
        "alertmanager": state.component("alertmanager"),
        "webhook_url": webhook.url + "/alerts" if webhook else None,
        "mesh_targets": str(paths.config / "targets" / "mesh.json"),
        "rule_files": [str(paths.config / "local.rules.yml"), str(rules_dir / "*.rules.yml")],
        **_front_door_limits(),
    }
    return _ENV.get_template(template).render(context)


def front_door_timeouts(settings: Settings | None = None) -> dict[str, float | int]:
    """How long the front door waits, and how fast it gives up on a replica: what bounds a
    zone failure's time to recover, so drills quote these figures (seconds) with theirs.

    ``timeout_server`` is derived, not tuned by hand: a replica's request makes at most two
    store calls (a read and a write), each bounded by MESH_STORAGE_TIMEOUT_SECONDS, plus a
    second of slack. Waiting longer only holds a client on a replica that will never answer
    (a blackholed zone on a kept-alive connection)."""
    storage = (settings or Settings()).storage_timeout_seconds
    return {
        "timeout_connect": 1.0,
        "timeout_server": round(2 * storage + 1.0, 3),
        "timeout_check": 1.0,
        "check_inter": 1.0,
        "check_fastinter": 0.25,
        "check_downinter": 1.0,
        "fall": 2,
        "rise": 2,
        "retries": 2,
        "redispatch": 1,
    }


def _ms(seconds: float | int) -> str:
    return f"{round(seconds * 1000)}ms"


def _front_door_limits() -> dict[str, object]:
    """The replicas' own client limit and slow-client timeouts (the same MESH_* variables,
    which they inherit), applied once more at the door, where they cover the whole cluster."""
    settings = Settings()
    rate, burst = settings.client_rate_per_second, settings.client_burst
    timeout = max(settings.header_timeout_seconds, settings.body_timeout_seconds)
    door = front_door_timeouts(settings)
    return {
        **{k: _ms(v) if k.startswith(("timeout", "check")) else v for k, v in door.items()},
        "client_rate": f"{rate:g}",
        "client_burst": burst,
        "client_window_ms": max(1, round(burst / rate * 1000)),
        "request_timeout": f"{round(timeout * 1000)}ms",
    }


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # file_sd watches the file: never let it see half a write


def render_all(state: ClusterState, paths: StateDir, rules_dir: Path = RULES_DIR) -> list[Path]:
    """Write every config file the planned components need; returns the paths written."""
    written: list[Path] = []
    wanted = {
        "haproxy": [("haproxy.cfg.j2", "haproxy.cfg")],
        "prometheus": [
            ("prometheus.yml.j2", "prometheus.yml"),
            ("local.rules.yml.j2", "local.rules.yml"),
        ],
        "alertmanager": [("alertmanager.yml.j2", "alertmanager.yml")],
    }
    for name, files in wanted.items():
        if state.component(name) is None:
            continue
        for template, target in files:
            path = paths.config / target
            _write(path, render_file(template, state, paths, rules_dir))
            written.append(path)
    if state.data_tier is not None:
        written += datatier.render(state.data_members(), state.data_tier, paths)
    if state.component("prometheus") is not None:
        path = paths.config / "targets" / "mesh.json"
        _write(path, json.dumps(mesh_targets(state), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
