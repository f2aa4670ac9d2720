"""Every Redis client of the engine (its own pool, Celery's broker connection and the channel
layer's) parses replies and packs commands with hiredis's C code, not redis-py's Python: in the
capacity benchmark that took about a tenth of the engine's CPU per order (README, Performance)."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from redis._parsers import _AsyncHiredisParser, _HiredisParser

from config.celery import app
from engine.redis import redis_client


def test_the_engines_own_redis_client_uses_hiredis() -> None:
    pool = redis_client().connection_pool
    connection = pool.get_connection()
    try:
        connection.connect()
        assert isinstance(connection._parser, _HiredisParser)
        assert type(connection._command_packer).__name__ == "HiredisRespSerializer"
    finally:
        pool.release(connection)


def test_celerys_broker_connection_uses_hiredis() -> None:
    with app.connection_for_write() as connection:
        client = connection.default_channel.client
        assert client.ping()
        pool = client.connection_pool
        sample = pool.get_connection()
        try:
            assert isinstance(sample._parser, _HiredisParser)
        finally:
            pool.release(sample)


def test_the_channel_layers_connections_use_hiredis() -> None:
    layer = get_channel_layer()

    async def parser() -> type:
        await layer.group_send("hiredis-check", {"type": "noop"})  # connects the shard
        (shard,) = layer._get_layer()._shards
        pool = shard._redis.connection_pool
        sample = await pool.get_connection()
        try:
            return type(sample._parser)
        finally:
            await pool.release(sample)
            await layer.flush()

    assert async_to_sync(parser)() is _AsyncHiredisParser
