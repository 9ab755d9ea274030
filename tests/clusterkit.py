"""Helpers for the tests that run a whole local cluster: the CLI, a steady request stream, and
revocation propagation measured across replicas."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from meshsre.identity import AgentKey

MESHSRE = str(Path(sys.executable).with_name("meshsre"))


def wait_for(check: Callable[[], bool], timeout: float = 10.0, every: float = 0.005) -> float:
    """Seconds until ``check()`` held; AssertionError when it never did."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(every)
    return time.monotonic() - began


def meshsre(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MESHSRE, *args], capture_output=True, text=True, timeout=timeout)


def describe(state_dir: Path) -> dict[str, Any]:
    done = meshsre("status", "--json", "--state-dir", str(state_dir))
    info: dict[str, Any] = json.loads(done.stdout)
    return info


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def register(client: httpx.Client) -> str:
    key = AgentKey.generate()
    r = client.post("/v1/agents", json=key.registration("agent", "ops@example.com", ["search"]))
    assert r.status_code == 201, r.text
    return key.did


@dataclass
class Outcome:
    at: float
    kind: str  # read or write
    status: int  # 0: transport error
    served_by: str
    did: str = ""


@dataclass
class Stream:
    """Paced reads and writes through the front door from background threads, recording every
    outcome: what a client sees while a zone fails under it."""

    url: str
    rate_per_thread: float = 40.0
    threads: int = 2
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self, seed_did: str) -> None:
        gap = 1.0 / self.rate_per_thread
        with httpx.Client(base_url=self.url, timeout=5, trust_env=False) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                start = time.time()
                key = AgentKey.generate() if n % 2 else None
                try:
                    if key is None:
                        r = client.get(f"/v1/agents/{seed_did}")
                    else:
                        r = client.post("/v1/agents", json=key.registration(
                            "stream", "ops@example.com"))
                    status, served = r.status_code, r.headers.get("x-served-by", "")
                except httpx.HTTPError:
                    status, served = 0, ""
                self.outcomes.append(Outcome(
                    start, "read" if key is None else "write", status, served,
                    key.did if key is not None and status == 201 else ""))
                self._stop.wait(max(0.0, gap - (time.time() - start)))

    def start(self, seed_did: str) -> Stream:
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, args=(seed_did,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=10)

    def errors(self, since: float = 0.0) -> int:
        return sum(1 for o in self.outcomes if o.at >= since and o.status not in (200, 201))

    def served(self, since: float = 0.0, until: float = math.inf) -> Counter[str]:
        return Counter(o.served_by for o in self.outcomes
                       if since <= o.at < until and o.served_by)


async def _revocation_round(clients: list[httpx.AsyncClient], admin: dict[str, str], did: str,
                            issuer: int, revoker: int) -> list[float]:
    r = await clients[issuer].post("/v1/credentials", headers=admin,
                                   json={"did": did, "ttl_seconds": 300})
    assert r.status_code == 201, r.text
    token, jti = r.json()["token"], r.json()["jti"]

    async def valid(c: httpx.AsyncClient) -> bool:
        v = await c.post("/v1/credentials/verify", json={"token": token})
        return bool(v.json()["valid"])

    assert all(await asyncio.gather(*(valid(c) for c in clients)))

    async def watch(c: httpx.AsyncClient) -> float:
        while await valid(c):
            await asyncio.sleep(0.005)
        return time.time()

    others = [c for i, c in enumerate(clients) if i != revoker]
    watchers = [asyncio.create_task(watch(c)) for c in others]
    rv = await clients[revoker].post(f"/v1/credentials/{jti}/revoke", headers=admin,
                                     json={"reason": "key_compromise"})
    assert rv.status_code == 200, rv.text
    revoked_at = float(rv.json()["revoked_at"])
    seen = await asyncio.wait_for(asyncio.gather(*watchers), timeout=15)
    # Same machine, same clock: the server's commit time against the client's first rejection.
    return [max(0.0, t - revoked_at) for t in seen]


def revocation_delays(replica_urls: list[str], admin_token: str, did: str,
                      rounds: int) -> list[float]:
    """Issue through one replica, revoke through another, and time how long every other
    replica keeps accepting the credential; one delay per (round, other replica)."""

    async def run() -> list[float]:
        admin = {"Authorization": f"Bearer {admin_token}"}
        clients = [httpx.AsyncClient(base_url=u, timeout=5, trust_env=False)
                   for u in replica_urls]
        try:
            delays: list[float] = []
            n = len(clients)
            for i in range(rounds):
                delays += await _revocation_round(clients, admin, did, i % n, (i + 1) % n)
            return delays
        finally:
            for c in clients:
                await c.aclose()

    return asyncio.run(run())
