"""Every panel query returns data from a real Prometheus scraping a real local cluster
(`meshsre up`: two zones, HAProxy, Prometheus with the generated rules) under traffic.

A query that parses and names real metrics can still come back empty: a wrong join, a label
the runtime never sets, a bucket boundary written differently. Only a live run shows that.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerts.datatier import SERIES
from dashboards.build import all_dashboards
from dashboards.lint import metric_names, queries
from meshsre.identity import AgentKey

pytestmark = pytest.mark.slow

# The local Prometheus scrapes every 2 s; Grafana would make $__rate_interval at least 4 scrape
# intervals. 20 s covers the traffic burst below with room to spare.
_SUBSTITUTIONS = {"$__rate_interval": "20s", "$job": ".+", "$zone": ".*", "$route": ".*"}
_TRAFFIC_SECONDS = 8.0
_TURN_SECONDS = 0.1  # about 100 requests/s, a third of MESH_CLIENT_RATE_PER_SECOND


def _meshsre(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from meshsre.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    missing = [b for b in ("prometheus", "haproxy") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install -y {' '.join(missing)})")
    state = str(tmp_path_factory.mktemp("cluster") / "state")
    common = ("--state-dir", state)
    up = _meshsre("up", "--zones", "a,b", "--replicas-per-zone", "1", "--without",
                  "alertmanager", "--base-port", "0", *common)
    try:
        assert up.returncode == 0, up.stderr
        info = json.loads(_meshsre("status", "--json", *common).stdout)
        yield info
    finally:
        _meshsre("down", "--purge", *common)


def _signed(client: httpx.Client, key: AgentKey, path: str, body: dict[str, Any]
            ) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = {**key.headers("POST", path, raw), "Content-Type": "application/json"}
    return client.post(path, content=raw, headers=headers)


def _traffic(url: str, admin_token: str, seconds: float) -> None:
    """A little of everything the dashboards plot: registrations, good and bad handshakes,
    allowed and denied tool calls, credentials issued, verified and revoked, audit checks."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    start = time.monotonic()
    deadline = start + seconds
    with httpx.Client(base_url=url, timeout=5) as client:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            # One client address, paced under the front door's per-client limit (each turn
            # sends about ten requests): over it, the door would answer nothing but 429.
            time.sleep(max(0.0, start + (i - 1) * _TURN_SECONDS - time.monotonic()))
            key = AgentKey.generate()
            policy = ("strict", "standard", "permissive")[i % 3]
            client.post("/v1/agents", json=key.registration(f"live-{i}", "ops@example.com",
                                                            ["search"], policy))
            challenge = _signed(client, key, "/v1/handshakes/challenge", {"did": key.did})
            if challenge.status_code == 201:
                ch = challenge.json()
                signer = key if i % 2 else AgentKey.generate()  # every other one is rejected
                client.post("/v1/handshakes/verify", json={
                    "challenge_id": ch["challenge_id"], "did": key.did,
                    "signature": signer.sign_challenge(ch["challenge_id"], ch["nonce"])})
            for tool in ("search", "shell"):
                _signed(client, key, "/v1/policy/decide",
                        {"did": key.did, "tool": tool, "action": "run"})
            issued = _signed(client, key, "/v1/credentials", {"did": key.did, "ttl_seconds": 300})
            if issued.status_code == 201:
                cred = issued.json()
                client.post("/v1/credentials/verify", json={"token": cred["token"]})
                client.post(f"/v1/credentials/{cred['jti']}/revoke", json={}, headers=admin)
            client.get("/v1/audit/verify", headers=admin)
            client.get("/v1/agents/did:mesh:00000000000000000000000000000000")


def test_every_panel_query_returns_data_from_the_live_cluster(cluster: dict[str, Any]) -> None:
    _traffic(cluster["front_door"], cluster["admin_token"], _TRAFFIC_SECONDS)
    time.sleep(4)  # two scrapes and a few rule evaluations after the last request
    empty, failed, checked = [], [], 0
    with httpx.Client(base_url=cluster["prometheus"], timeout=10) as prom:
        for board in all_dashboards():
            for where, query in queries(board):
                if where.startswith("variable") or metric_names(query) <= SERIES:
                    continue  # the data tier's panels: checked on Patroni by test_datatier.py
                expr = query
                for variable, value in _SUBSTITUTIONS.items():
                    expr = expr.replace(variable, value)
                answer = prom.get("/api/v1/query", params={"query": expr}).json()
                checked += 1
                if answer["status"] != "success":
                    failed.append(f"{board['uid']} {where}: {answer.get('error')}")
                elif not answer["data"]["result"]:
                    empty.append(f"{board['uid']} {where}: {expr}")
    assert checked > 100
    assert failed == []
    assert empty == []


def test_the_local_cluster_used_here_loads_the_generated_slo_rules(cluster: dict[str, Any]
                                                                   ) -> None:
    groups = httpx.get(f"{cluster['prometheus']}/api/v1/rules", timeout=10).json()
    files = {Path(g["file"]).name for g in groups["data"]["groups"]}
    assert "slo-api-availability.rules.yml" in files
