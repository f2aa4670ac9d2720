"""The Redis copy of every live order, so `GET /api/orders/<id>` of an active order costs no
query. The order document and its events live in two keys with a one-hour TTL; a terminal order
is dropped from the cache and served from PostgreSQL. Redis may be emptied at any moment: a miss
simply reads the database."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from django.conf import settings

from config.fastjson import dumpb
from engine.redis import redis_client

logger = logging.getLogger(__name__)


def _keys(order_id: str) -> tuple[str, str]:
    return f"oe:order:{order_id}", f"oe:order:{order_id}:events"


#: One order's Redis copy to write: its document, its new events, and whether it is live (a
#: final order's copy is dropped instead).
CacheEntry = tuple[dict[str, Any], list[dict[str, Any]], bool]


def orders_cache_store(entries: list[CacheEntry]) -> None:
    """Write the orders' copies in one round trip: one pipeline, which Redis runs in order (two
    entries of one order leave the later one)."""
    try:
        pipe = redis_client().pipeline(transaction=False)
        orders_cache_commands(pipe, entries)
        pipe.execute()
    except redis.RedisError:
        ids = ",".join(order["orderId"] for order, _, _ in entries)
        logger.warning("order cache write failed orders=%s", ids, exc_info=True)


def orders_cache_commands(pipe: Any, entries: list[CacheEntry]) -> None:
    """`orders_cache_store`'s commands, added to a pipeline on REDIS_URL: the outbox sends them
    ahead of the PUBLISHes of the updates they show, in one round trip
    (`Outbox.gather(pipelined=…)`)."""
    ttl = settings.ORDER_CACHE_TTL_SECONDS
    for order, events, live in entries:
        doc_key, events_key = _keys(order["orderId"])
        if not live:
            pipe.delete(doc_key, events_key)
            continue
        pipe.set(doc_key, dumpb(order), ex=ttl)
        if events:
            pipe.zadd(events_key, {dumpb(e): e["seq"] for e in events})
        pipe.expire(events_key, ttl)


def order_cache_get(order_id: str) -> dict[str, Any] | None:
    doc_key, events_key = _keys(order_id)
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.get(doc_key)
        pipe.zrange(events_key, 0, -1)
        doc, events = pipe.execute()
    except redis.RedisError:
        return None
    if doc is None:
        return None
    order = json.loads(doc)
    parsed = [json.loads(e) for e in events]
    # The cache must never show less than the client could have seen: a gap means it is stale.
    if not parsed or [e["seq"] for e in parsed] != list(range(1, len(parsed) + 1)):
        return None
    order["events"] = parsed
    return order
