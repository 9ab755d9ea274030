"""Where the tests find PostgreSQL and Redis: the URL in the environment; else the machine's
own server on its standard port; else, where a Docker engine answers, a throwaway container
(testcontainers); else the local default, so that the first test says what is missing."""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
from functools import cache
from typing import Any
from urllib.parse import urlsplit

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def _listening(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 0.5):
            return True
    except OSError:
        return False


def _docker_engine() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _container(container: Any) -> Any:
    container.start()
    atexit.register(container.stop)
    return container


@cache
def pg_admin_url() -> str:
    if url := os.environ.get("MESH_TEST_PG_URL"):
        return url
    if _listening(LOCAL_PG) or not _docker_engine():
        return LOCAL_PG
    from testcontainers.community.postgres import PostgresContainer

    pg = _container(PostgresContainer("postgres:16-alpine", username="postgres",
                                      password="postgres", dbname="postgres"))
    return str(pg.get_connection_url(driver=None))


@cache
def redis_url() -> str:
    if url := os.environ.get("MESH_TEST_REDIS_URL"):
        return url
    if _listening(LOCAL_REDIS) or not _docker_engine():
        return LOCAL_REDIS
    from testcontainers.community.redis import RedisContainer

    redis = _container(RedisContainer("redis:7-alpine"))
    host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
    return f"redis://{host}:{port}/0"
