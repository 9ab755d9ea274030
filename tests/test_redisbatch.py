"""Redis commands of one loop turn share one pipeline, on a real Redis: each caller gets its
own reply or its own error, and a dead Redis fails them all, counted once by the breaker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Gauge

from mesh.breaker import BreakerOpen, CircuitBreaker
from mesh.redisbatch import RedisBatch
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.redis


def _breaker() -> CircuitBreaker:
    gauge = Gauge("b", "b", ["dependency"], registry=CollectorRegistry())
    return CircuitBreaker("redis", gauge, threshold=2)


def test_commands_of_one_loop_turn_go_in_one_pipeline_each_with_its_reply() -> None:
    async def scenario() -> None:
        client = aioredis.from_url(REDIS_URL)
        batch, sent = RedisBatch(client, _breaker()), []
        original = client.pipeline

        def counting(**kwargs: object) -> object:
            sent.append(1)
            return original(**kwargs)

        client.pipeline = counting  # type: ignore[method-assign]
        key = f"mesh-test:{uuid.uuid4().hex}"
        replies = await asyncio.gather(
            batch.run(lambda p: p.set(key, b"1", nx=True, px=5000)),
            batch.run(lambda p: p.set(key, b"1", nx=True, px=5000)),
            batch.run(lambda p: p.incr(key + ":n")),
            batch.run(lambda p: p.execute_command("NO-SUCH-COMMAND")),
            return_exceptions=True,
        )
        assert replies[:3] == [True, None, 1]
        assert isinstance(replies[3], aioredis.ResponseError)
        assert sent == [1]  # one pipeline, one round trip
        await client.delete(key, key + ":n")
        await client.aclose()

    asyncio.run(scenario())


def test_a_dead_redis_fails_every_caller_and_opens_the_breaker() -> None:
    async def scenario() -> None:
        client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.25)
        breaker = _breaker()
        batch = RedisBatch(client, breaker)
        for _ in range(2):
            replies = await asyncio.gather(*(batch.run(lambda p: p.get("k")) for _ in range(3)),
                                           return_exceptions=True)
            assert all(isinstance(r, Exception) for r in replies)
        assert not breaker.allow()
        with pytest.raises(BreakerOpen):
            await batch.run(lambda p: p.get("k"))
        await client.aclose()

    asyncio.run(scenario())
