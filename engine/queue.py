"""What the broker holds: messages waiting in the orders queue (Redis list) and messages
scheduled for later (held by workers until their time)."""

from __future__ import annotations

import redis
from django.conf import settings

from engine.redis import redis_client


def queue_depth() -> int | None:
    try:
        if settings.CELERY_BROKER_URL != settings.REDIS_URL:
            client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1)
        else:
            client = redis_client()
        return int(client.llen(settings.CELERY_TASK_DEFAULT_QUEUE))
    except redis.RedisError:
        return None
