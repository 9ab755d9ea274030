"""The mesh workload: a population of agents that sign their requests.

    $ locust -f loadtests/locustfile.py --host http://127.0.0.1:18080           # web UI
    $ locust -f loadtests/locustfile.py --headless -u 20 -t 60s --rate 50 --host URL

Each user registers a few agents before the measured run (named ``[setup] ...`` in Locust's
stats), keeps a stock of fresh keys for the registration task, and then sends only when the
pacer gives it a slot: the offered rate is ``--rate`` whatever the server does. Signatures are
made before waiting for the slot, so signing is never inside a measured latency. Requests are
named by route template, one stats row per route, never one per DID. Signed requests are spread
over many agents (the mesh limits each agent to 120 signed requests a minute, cluster-wide
with Redis), each signed anew with its own nonce (the mesh accepts a signed request once),
and decisions only ask for tools no policy denies: a denial lowers the agent's trust and is
audited, which a load test must not do by accident. Admin-only reads need ``MESH_ADMIN_TOKEN``.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from locust import FastHttpUser, constant, task

from loadtests import hooks

# Shape classes, imported by name so Locust finds them; the first is the default, --shape picks.
from loadtests.shapes import SoakShape, SpikeShape, SteadyShape, StepShape  # noqa: F401
from meshsre.identity import AgentKey

POLICIES = ("standard",) * 4 + ("permissive",)
TOOLS = ("search", "http", "calendar", "email", "database")
ACTIONS = ("read", "query", "write")
FRESH_KEYS = 20  # keys generated per user up front (about 50 us each), topped up when used
MAX_TOKENS = 20
TOKEN_TTL_S = 900  # the mesh's maximum; tokens are dropped a minute before they expire
Check = Callable[[dict[str, Any]], str | None]


def _allowed(answer: dict[str, Any]) -> str | None:
    # A denial here means the workload tripped a rule (the rate limit, most likely).
    return None if answer.get("decision") == "allow" else f"denied by {answer.get('rule')}"


def _valid(answer: dict[str, Any]) -> str | None:
    return None if answer.get("valid") else f"live credential rejected: {answer.get('reason')}"


class MeshAgent(FastHttpUser):
    wait_time = constant(0)  # the pacer decides when to send
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        self.agents: list[AgentKey] = []
        self.fresh = deque(AgentKey.generate() for _ in range(FRESH_KEYS))
        self.tokens: deque[tuple[str, str, AgentKey, float]] = deque(maxlen=MAX_TOKENS)
        self.admin = hooks.harness().admin_token
        for _ in range(int(self.environment.parsed_options.agents_per_user)):
            if not self.register(setup=True):
                break  # a failing mesh is measured by the run itself, not waited out here
        hooks.harness().ready_users += 1

    # -- sending ---------------------------------------------------------------------------
    def send(self, method: str, route: str, path: str, body: dict[str, Any] | None = None,
             *, key: AgentKey | None = None, admin: bool = False, expect: int = 200,
             check: Check | None = None, setup: bool = False) -> dict[str, Any] | None:
        """One request on the pacer's schedule; the JSON answer, or None when unexpected.
        ``check`` may name what is wrong with a well-formed answer (a failure in the stats)."""
        raw = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if key is not None:
            headers.update(key.headers(method, path, raw))
        if admin and self.admin:
            headers["Authorization"] = f"Bearer {self.admin}"
        context: dict[str, Any] = {}
        if not setup:
            intended = hooks.harness().wait_for_slot()
            context["lag"] = max(0.0, time.monotonic() - intended)
        name = hooks.SETUP + route if setup else route
        # json.dumps escapes to ASCII: the text sent is exactly the bytes that were signed.
        with self.client.request(method, path, name=name, data=raw.decode() or None,
                                 headers=headers,
                                 catch_response=True, context=context) as resp:
            if resp.status_code != expect:
                resp.failure(f"HTTP {resp.status_code}, expected {expect}")
                return None
            try:
                answer: dict[str, Any] = resp.json()
            except ValueError:
                resp.failure("answer is not JSON")
                return None
            problem = check(answer) if check is not None else None
            if problem:
                resp.failure(problem)
                return None
            resp.success()
            return answer

    def agent(self) -> AgentKey | None:
        return random.choice(self.agents) if self.agents else None

    # -- tasks -------------------------------------------------------------------------------
    @task(1)  # type: ignore[type-var]  # `setup` is ours; Locust calls it without arguments
    def register(self, setup: bool = False) -> bool:
        key = self.fresh.popleft() if self.fresh else AgentKey.generate()
        if len(self.fresh) < FRESH_KEYS // 2:
            self.fresh.append(AgentKey.generate())
        body = key.registration(f"load-{key.did[-8:]}", "load@example.com",
                                random.sample(TOOLS, 2), random.choice(POLICIES))
        if not self.send("POST", "/v1/agents", "/v1/agents", body, expect=201, setup=setup):
            return False
        hooks.harness().ledger.add(key.did, time.time())
        if len(self.agents) < 4 * int(self.environment.parsed_options.agents_per_user):
            self.agents.append(key)
        return True

    @task(3)
    def handshake(self) -> None:
        verifier, peer = self.agent(), self.agent()
        if verifier is None or peer is None:
            self.register()
            return None
        path = "/v1/handshakes/challenge"
        challenge = self.send("POST", path, path, {"did": peer.did}, key=verifier, expect=201)
        if challenge is None:
            return None
        signature = peer.sign_challenge(challenge["challenge_id"], challenge["nonce"])
        path = "/v1/handshakes/verify"
        self.send("POST", path, path, {"challenge_id": challenge["challenge_id"],
                                       "did": peer.did, "signature": signature})
        return None

    @task(8)
    def decide(self) -> None:
        agent = self.agent()
        if agent is None:
            self.register()
            return None
        path = "/v1/policy/decide"
        body = {"did": agent.did, "tool": random.choice(TOOLS), "action": random.choice(ACTIONS)}
        self.send("POST", path, path, body, key=agent, check=_allowed)
        return None

    @task(2)
    def issue_credential(self) -> None:
        agent = self.agent()
        if agent is None:
            self.register()
            return None
        path = "/v1/credentials"
        issued = self.send("POST", path, path, {"did": agent.did, "ttl_seconds": TOKEN_TTL_S},
                           key=agent, expect=201)
        if issued is not None:
            self.tokens.append((issued["jti"], issued["token"], agent, issued["expires_at"]))
        return None

    def live_tokens(self) -> deque[tuple[str, str, AgentKey, float]]:
        while self.tokens and self.tokens[0][3] < time.time() + 60:
            self.tokens.popleft()
        return self.tokens

    @task(3)
    def verify_credential(self) -> None:
        if not self.live_tokens():
            return self.issue_credential()
        _, token, _, _ = random.choice(self.tokens)
        path = "/v1/credentials/verify"
        self.send("POST", path, path, {"token": token}, check=_valid)
        return None

    @task(1)
    def revoke_credential(self) -> None:
        if not self.live_tokens():
            return self.issue_credential()
        jti, _, subject, _ = self.tokens.popleft()
        self.send("POST", "/v1/credentials/{jti}/revoke", f"/v1/credentials/{jti}/revoke",
                  {"reason": "superseded"}, key=subject)
        return None

    @task(2)
    def read_agent(self) -> None:
        agent = self.agent()
        if agent is None:
            self.register()
            return None
        self.send("GET", "/v1/agents/{did}", f"/v1/agents/{agent.did}")
        return None

    @task(1)
    def liveness(self) -> None:
        # No work in the server: its client time is the overhead of every other request's.
        self.send("GET", "/health/live", "/health/live")

    @task(1)
    def read_audit(self) -> None:
        if not self.admin:
            return self.read_agent()
        self.send("GET", "/v1/audit", "/v1/audit?limit=20", admin=True)
        return None
