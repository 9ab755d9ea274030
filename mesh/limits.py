"""Fair limits: requests per client address, and signed requests per agent.

Both are GCRA (the generic cell rate algorithm: one timestamp per key, the theoretical arrival
time of the next request), cluster-wide in Redis when it is configured and reachable, else
per replica. Over a limit the caller answers 429 with ``Retry-After``: a rate limit is a
matter of fairness, not of policy, and costs an agent no trust.

>>> g = Gcra(per_second=1.0, burst=2)
>>> [g.wait("k", now=0.0) for _ in range(3)]
[0.0, 0.0, 1.0]
"""

from __future__ import annotations

import contextlib

from mesh.redisbatch import RedisBatch

__all__ = ["Gcra", "RateLimits"]

# Redis keeps each key's theoretical arrival time, in microseconds of Redis's own clock, so
# that replicas with drifting clocks still share one schedule. Returns the microseconds to
# wait, 0 when the request is admitted. The time is written with %.0f: Lua's own conversion
# keeps 14 digits, a tenth of a millisecond off by now; and an expiry is at least 1 ms.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + interval - tolerance
if allow_at > now then return allow_at - now end
local ttl = math.max(1, math.ceil((tat + interval - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', ttl)
return 0
"""
MAX_KEYS = 100_000  # per replica: idle keys are dropped first, as they hold no debt


class Gcra:
    """One replica's limit: ``burst`` requests at once, then ``per_second``."""

    def __init__(self, per_second: float, burst: int) -> None:
        self.interval = 1.0 / per_second
        self.tolerance = burst * self.interval
        self._tat: dict[str, float] = {}

    def wait(self, key: str, now: float) -> float:
        """0.0 when a request now is admitted (and counted), else the seconds to wait."""
        tat = self._tat.get(key, now)
        if tat < now:
            tat = now
        allow_at = tat + self.interval - self.tolerance
        if allow_at > now:
            return allow_at - now
        if len(self._tat) >= MAX_KEYS:
            self._forget_idle(now)
        self._tat[key] = tat + self.interval
        return 0.0

    def _forget_idle(self, now: float) -> None:
        self._tat = {k: t for k, t in self._tat.items() if t > now}
        if len(self._tat) >= MAX_KEYS:
            self._tat.clear()


class RateLimits:
    """The client and agent limits of one replica, shared through ``redis`` when given."""

    def __init__(
        self,
        client_per_second: float,
        client_burst: int,
        agent_per_minute: int,
        redis: RedisBatch | None = None,
    ) -> None:
        self.local = {
            "client": Gcra(client_per_second, client_burst),
            "agent": Gcra(agent_per_minute / 60.0, agent_per_minute),
        }
        self.redis = redis

    @property
    def shared(self) -> bool:
        """Whether the limits are counted in Redis (else ``local`` is all there is, and a
        caller on a hot path may call it without awaiting anything)."""
        return self.redis is not None

    async def wait(self, kind: str, key: str, now: float) -> float:
        """Seconds until a request of ``kind`` (client or agent) by ``key`` may pass; 0.0
        when this one passes. A Redis that fails falls back to this replica's own count."""
        local = self.local[kind]
        if self.redis is not None:
            args = (round(local.interval * 1e6), round(local.tolerance * 1e6))
            rate_key = f"mesh:rate:{kind}:{key}"
            with contextlib.suppress(Exception):  # BreakerOpen too: count here instead
                # EVAL, not EVALSHA: no script to reload after a Redis restart, and Redis
                # caches the compiled script by its digest all the same.
                waited = await self.redis.run(lambda pipe: pipe.eval(_GCRA_LUA, 1, rate_key, *args))
                return int(waited) / 1e6
        return local.wait(key, now)
