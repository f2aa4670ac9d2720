"""The Celery broker transport: kombu's Redis transport, with one Redis client per channel.

kombu builds a new `redis.Redis` around the channel's connection pool for every publish,
acknowledgement and unacked-set update (`Channel.conn_or_acquire`). With redis-py 6 a client
takes about 60 µs to build (its response-callback table, event dispatcher and maintenance
settings), and the worker's main process makes several per task message: in a capacity profile
that was a fifth of its CPU. A client holds no connection of its own (each command borrows one
from the pool), so one per channel serves every caller, across threads too. It is built again
when the channel replaces its pool (after a connection error kombu drops the pools).

It also keeps a lost Redis from stopping the worker: see `Channel.conn_or_acquire`.

`use_for_redis_urls()` (config.celery calls it) makes kombu's `redis` scheme name this class, so
the broker URL stays `redis://…` everywhere it is shown or read: naming the class in
`broker_transport` instead turns the connection's URL into `config.broker:Transport://…`, whose
scheme Flower does not know, and its broker page and queue lengths answer 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu import transport
from kombu.transport import redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(redis.Channel):
    _shared_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._pool is None and self.connection.client is None:
            # Detached: the worker's consumer lost Redis and `collect` cut the transport from
            # its connection, but a close that raised left this channel open, and closing it
            # again restores its unacknowledged tasks through here. No pool can be built any
            # more (kombu's would raise AttributeError, which celery treats as fatal and stops
            # the worker): say it as the connection error it is, which celery handles by
            # reconnecting. The tasks stay in Redis's unacked set, restored after the
            # visibility timeout (and if Redis lost them, the reconciler resumes the orders).
            raise RedisConnectionError("the broker connection is closed")
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = self._create_client()
        yield shared


class Transport(redis.Transport):
    Channel = Channel


def use_for_redis_urls() -> None:
    """`redis://` broker URLs get this transport; `rediss://` and other schemes keep kombu's."""
    name = f"{__name__}:{Transport.__name__}"
    if transport.TRANSPORT_ALIASES.get("redis") != name:
        transport.TRANSPORT_ALIASES["redis"] = name
        transport._transport_cache.pop("redis", None)  # resolved before, by kombu's name
