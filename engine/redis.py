"""One Redis connection pool per process, for the rate limiter, the active-order cache and the
health check. Created lazily so that a forked worker builds its own."""

from __future__ import annotations

import os

import redis
from django.conf import settings

_client: redis.Redis | None = None
_pid: int | None = None


def redis_client() -> redis.Redis:
    global _client, _pid
    if _client is None or _pid != os.getpid():
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
        )
        _pid = os.getpid()
    return _client
